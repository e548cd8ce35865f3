//! The fused training forward of the first layer
//! (`conv::fused::conv2d_max_pool_argmax_at`: conv + bias + relu + 2x2 max
//! pool, writing only the pooled map and its argmax) against the two passes
//! it replaces on the tape: the `direct` forward (bias and relu fused) into
//! the conv's full-size map, then `pool::max_pool2d_forward` with its
//! argmax. The chapter model's first layer (28x28x1 -> 32, 3x3) at batch
//! 64, at every SIMD level this CPU runs. Throughput is the conv's direct
//! FLOPs for both, so the figures compare time per call.
//!
//! ```text
//! cargo bench -p convnet-benches --bench fused_forward_argmax
//! RAYON_NUM_THREADS=1 cargo bench -p convnet-benches --bench fused_forward_argmax
//! ```

use convnet_kernels::activation::Activation;
use convnet_kernels::conv::fused::{conv2d_max_pool_argmax_at, Threading};
use convnet_kernels::conv::{conv2d_forward_at, ConvAlgo, ConvShape, Padding};
use convnet_kernels::pool::{max_pool2d_forward_at, PoolShape};
use convnet_kernels::simd::SimdLevel;
use convnet_tensor::Rng;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

fn fused_forward_argmax(c: &mut Criterion) {
    let mut rng = Rng::new(1);
    let n = 64;
    let s = ConvShape::new(n, 28, 28, 1, 32, 3, 3).unwrap();
    let ps = PoolShape::new(n, s.out_h(), s.out_w(), s.c_out, (2, 2), (2, 2), Padding::Valid).unwrap();
    let x: Vec<f32> = (0..s.input_len()).map(|_| rng.uniform(0.0, 1.0)).collect();
    let w: Vec<f32> = (0..s.filter_len()).map(|_| rng.uniform(-0.3, 0.3)).collect();
    let b: Vec<f32> = (0..s.c_out).map(|_| rng.uniform(-0.1, 0.1)).collect();
    let mut map = vec![0.0; s.output_len()];
    let (mut y, mut argmax) = (vec![0.0; ps.output_len()], vec![0u32; ps.output_len()]);
    let mut group = c.benchmark_group("fused_forward_argmax/64x28x28x1->32");
    group.throughput(Throughput::Elements(s.flops() as u64));
    for level in SimdLevel::available() {
        group.bench_function(format!("conv_max_pool/{}", level.name()), |bch| {
            bch.iter(|| {
                conv2d_max_pool_argmax_at(
                    level,
                    &s,
                    &x,
                    &w,
                    Some(&b),
                    Activation::Relu,
                    &mut y,
                    &mut argmax,
                    Threading::Pool,
                )
                .unwrap();
                black_box((&y, &argmax));
            })
        });
        group.bench_function(format!("direct+max_pool2d/{}", level.name()), |bch| {
            bch.iter(|| {
                conv2d_forward_at(level, ConvAlgo::Direct, &s, &x, &w, Some(&b), Activation::Relu, &mut map).unwrap();
                max_pool2d_forward_at(level, &ps, &map, &mut y, &mut argmax).unwrap();
                black_box((&y, &argmax));
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! { name = benches; config = config(); targets = fused_forward_argmax }
criterion_main!(benches);
