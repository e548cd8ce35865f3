//! The fused pooled backward-filter (`conv::fused::conv2d_backward_filter_max_pooled_at`:
//! filter and bias gradients of `conv + relu + 2x2 max pool` straight from
//! the pooled gradient) against the passes it replaces in the training step:
//! the relu mask on the pooled gradient, the max-pool backward scatter into
//! the conv's full-size map, the bias gradient and the `direct`
//! backward-filter over that map. The chapter model's first layer
//! (28x28x1 -> 32, 3x3) at batch 64, at every SIMD level this CPU runs.
//! Throughput is the conv's direct FLOPs for both, so the figures compare
//! time per call.
//!
//! ```text
//! cargo bench -p convnet-benches --bench fused_backward
//! RAYON_NUM_THREADS=1 cargo bench -p convnet-benches --bench fused_backward
//! ```

use convnet_kernels::activation::Activation;
use convnet_kernels::conv::fused::{conv2d_backward_filter_max_pooled_at, PooledGradient};
use convnet_kernels::conv::{
    conv2d_backward_bias, conv2d_backward_filter_at, conv2d_forward_at, ConvAlgo, ConvShape, Padding,
};
use convnet_kernels::pool::{max_pool2d_backward_at, max_pool2d_forward_at, PoolShape};
use convnet_kernels::simd::SimdLevel;
use convnet_tensor::Rng;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

fn fused_backward(c: &mut Criterion) {
    let mut rng = Rng::new(1);
    let n = 64;
    let s = ConvShape::new(n, 28, 28, 1, 32, 3, 3).unwrap();
    let ps = PoolShape::new(n, s.out_h(), s.out_w(), s.c_out, (2, 2), (2, 2), Padding::Valid).unwrap();
    let x: Vec<f32> = (0..s.input_len()).map(|_| rng.uniform(0.0, 1.0)).collect();
    let w: Vec<f32> = (0..s.filter_len()).map(|_| rng.uniform(-0.3, 0.3)).collect();
    let b: Vec<f32> = (0..s.c_out).map(|_| rng.uniform(-0.1, 0.1)).collect();
    let g: Vec<f32> = (0..ps.output_len()).map(|_| rng.uniform(-1e-3, 1e-3)).collect();
    let mut map = vec![0.0; s.output_len()];
    let (mut y, mut argmax) = (vec![0.0; ps.output_len()], vec![0u32; ps.output_len()]);
    conv2d_forward_at(SimdLevel::Portable, ConvAlgo::Direct, &s, &x, &w, Some(&b), Activation::Relu, &mut map).unwrap();
    max_pool2d_forward_at(SimdLevel::Portable, &ps, &map, &mut y, &mut argmax).unwrap();
    let mut group = c.benchmark_group("fused_backward/64x28x28x1->32");
    group.throughput(Throughput::Elements(s.flops() as u64));
    let (mut dw, mut db) = (vec![0.0; s.filter_len()], vec![0.0; s.c_out]);
    for level in SimdLevel::available() {
        group.bench_function(format!("max_pooled/{}", level.name()), |bch| {
            bch.iter(|| {
                let pooled = PooledGradient { grad: &g, argmax: &argmax, relu_output: Some(&y) };
                conv2d_backward_filter_max_pooled_at(level, &s, &ps, &x, pooled, &mut dw, Some(&mut db)).unwrap();
                black_box((&dw, &db));
            })
        });
        let mut masked = g.clone();
        let mut dy = vec![0.0; s.output_len()];
        group.bench_function(format!("mask+scatter+bias+direct/{}", level.name()), |bch| {
            bch.iter(|| {
                for ((m, &gv), &yv) in masked.iter_mut().zip(&g).zip(&y) {
                    *m = if yv <= 0.0 { 0.0 } else { gv };
                }
                max_pool2d_backward_at(level, &ps, &masked, &argmax, &mut dy).unwrap();
                conv2d_backward_bias(&s, &dy, &mut db).unwrap();
                conv2d_backward_filter_at(level, ConvAlgo::Direct, &s, &x, &dy, &mut dw).unwrap();
                black_box((&dw, &db));
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

criterion_group! { name = benches; config = config(); targets = fused_backward }
criterion_main!(benches);
