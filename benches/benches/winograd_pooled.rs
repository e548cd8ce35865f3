//! Winograd with the 2x2 max pool fused into the output transform
//! (`conv::winograd::pooled`) against what the inference plan ran before:
//! the Winograd forward (ReLU in its epilogue) followed by the inference
//! max pool, on the chapter model's conv2d_1 (13x13x32 -> 64, pooled) and
//! conv2d_2 (5x5x64 -> 64, no pool: the inference blocking alone) at batch
//! 64, F(4x4, 3x3), at every SIMD level this CPU runs. Throughput is the
//! convolution's FLOPs over the whole conv map (so the figures compare time
//! per call).
//!
//! ```text
//! cargo bench -p convnet-benches --bench winograd_pooled
//! ```

use convnet_kernels::activation::Activation;
use convnet_kernels::conv::fused::{max_pool_2x2_at, FusedPool, Threading};
use convnet_kernels::conv::winograd::pooled::{conv2d_winograd_pooled_at, output_len};
use convnet_kernels::conv::{conv2d_forward_at, ConvAlgo, ConvShape};
use convnet_kernels::simd::SimdLevel;
use convnet_tensor::Rng;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

fn winograd_pooled(c: &mut Criterion) {
    let mut rng = Rng::new(1);
    let algo = ConvAlgo::WinogradF4;
    for (hw, ci, co, pool) in [(13, 32, 64, FusedPool::Max2x2), (5, 64, 64, FusedPool::None)] {
        let s = ConvShape::new(64, hw, hw, ci, co, 3, 3).unwrap();
        let x: Vec<f32> = (0..s.input_len()).map(|_| rng.uniform(0.0, 1.0)).collect();
        let w: Vec<f32> = (0..s.filter_len()).map(|_| rng.uniform(-0.1, 0.1)).collect();
        let b: Vec<f32> = (0..co).map(|_| rng.uniform(-0.1, 0.1)).collect();
        let mut group = c.benchmark_group(format!("winograd_pooled/64x{hw}x{hw}x{ci}->{co}"));
        group.throughput(Throughput::Elements(s.flops() as u64));
        for level in SimdLevel::available() {
            let mut y = vec![0.0; output_len(&s, pool)];
            group.bench_function(format!("fused/{}", level.name()), |bch| {
                bch.iter(|| {
                    conv2d_winograd_pooled_at(level, algo, &s, &x, &w, Some(&b), Activation::Relu, pool, &mut y)
                        .unwrap();
                    black_box(&y);
                })
            });
            let mut map = vec![0.0; s.output_len()];
            group.bench_function(format!("winograd+pool/{}", level.name()), |bch| {
                bch.iter(|| {
                    conv2d_forward_at(level, algo, &s, &x, &w, Some(&b), Activation::Relu, &mut map).unwrap();
                    if pool == FusedPool::Max2x2 {
                        let (h, w) = (s.out_h(), s.out_w());
                        max_pool_2x2_at(level, 64, h, w, co, &map, &mut y, Threading::Pool).unwrap();
                    }
                    black_box((&map, &y));
                })
            });
        }
        group.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! { name = benches; config = config(); targets = winograd_pooled }
criterion_main!(benches);
