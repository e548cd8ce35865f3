//! Depthwise and grouped convolution on the layers of
//! `../shared/anchors/run.sh depthwise` (MobileNet v1's depthwise layers and a
//! ResNeXt-style 4-group layer, batch 8, 3x3 `same`): forward, backward-data
//! and backward-filter, one criterion group per layer and pass with every
//! algorithm that runs the layer side by side (`depthwise` and the grouped
//! `im2col` path on the depthwise layers, `im2col` on the grouped one; the
//! f64 `reference` is left out, far slower) and `auto`, which picks one of
//! them. The depthwise layers also time `depthwise::backward`, both
//! gradients in one call (one sweep at stride 2, the two passes at
//! stride 1).
//!
//! Throughput is in FLOPs of the direct convolution
//! (`2*N*Ho*Wo*Cout*(Cin/groups)*Kh*Kw`), so "Gelem/s" reads as GFLOP/s.
//!
//! ```text
//! cargo bench -p convnet-benches --bench depthwise
//! cargo bench -p convnet-benches --bench depthwise -- dw_112   # a filter
//! cargo bench -p convnet-benches --bench depthwise -- 'dw_28x28x256_s1/forward' --measurement-time 5
//! ```
//!
//! Sample size 10, warm-up 0.3 s and measurement 1.5 s are the defaults of
//! the config at the bottom; the command-line flags override them.

use convnet_kernels::activation::Activation;
use convnet_kernels::conv::{self, ConvAlgo, ConvPass, ConvShape, Padding};
use convnet_tensor::Rng;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

/// The anchor's layers: name, shape.
fn layers() -> Vec<(&'static str, ConvShape)> {
    let layer = |h: usize, c: usize, stride: usize, groups: usize| {
        ConvShape::nhwc(8, h, h, c)
            .filter(3, 3, c)
            .stride(stride, stride)
            .padding(Padding::Same)
            .groups(groups)
            .build()
            .unwrap()
    };
    vec![
        ("dw_112x112x32_s1", layer(112, 32, 1, 32)),
        ("dw_112x112x64_s2", layer(112, 64, 2, 64)),
        ("dw_28x28x256_s1", layer(28, 256, 1, 256)),
        ("dw_14x14x512_s1", layer(14, 512, 1, 512)),
        ("grouped_56x56x128_g4", layer(56, 128, 1, 4)),
    ]
}

fn uniform(len: usize, rng: &mut Rng) -> Vec<f32> {
    (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

fn grouped_layers(c: &mut Criterion) {
    let mut rng = Rng::new(14);
    for (name, s) in layers() {
        let (x, w, gy) =
            (uniform(s.input_len(), &mut rng), uniform(s.filter_len(), &mut rng), uniform(s.output_len(), &mut rng));
        let (mut y, mut gx, mut gw) = (vec![0.0; s.output_len()], vec![0.0; s.input_len()], vec![0.0; s.filter_len()]);
        for pass in [ConvPass::Forward, ConvPass::BackwardData, ConvPass::BackwardFilter] {
            let mut group = c.benchmark_group(format!("grouped/{name}/{}", pass.name()));
            group.throughput(Throughput::Elements(s.flops() as u64));
            let algos = ConvAlgo::ALL.into_iter().filter(|&a| a != ConvAlgo::Reference).chain([ConvAlgo::Auto]);
            for algo in algos.filter(|&a| conv::supports(a, &s, pass).is_ok()) {
                let id = match algo {
                    ConvAlgo::Auto => format!("auto({})", conv::select(&s, pass).name()),
                    a => a.name().to_string(),
                };
                match pass {
                    ConvPass::Forward => group.bench_function(id, |b| {
                        b.iter(|| {
                            conv::conv2d_forward(algo, &s, &x, &w, None, Activation::Linear, &mut y).unwrap();
                            black_box(&y);
                        })
                    }),
                    ConvPass::BackwardData => group.bench_function(id, |b| {
                        b.iter(|| {
                            conv::conv2d_backward_data(algo, &s, &gy, &w, &mut gx).unwrap();
                            black_box(&gx);
                        })
                    }),
                    ConvPass::BackwardFilter => group.bench_function(id, |b| {
                        b.iter(|| {
                            conv::conv2d_backward_filter(algo, &s, &x, &gy, &mut gw).unwrap();
                            black_box(&gw);
                        })
                    }),
                };
            }
            group.finish();
        }
        if s.groups == s.c_in {
            // Both gradients in one sweep (what the tape runs when it needs both).
            let mut group = c.benchmark_group(format!("grouped/{name}/backward_both"));
            group.throughput(Throughput::Elements(2 * s.flops() as u64));
            group.bench_function("depthwise", |b| {
                b.iter(|| {
                    conv::depthwise::backward(&s, &x, &gy, &w, &mut gx, &mut gw).unwrap();
                    black_box((&gx, &gw));
                })
            });
            group.finish();
        }
    }
}

criterion_group! {
    name = benches;
    // Defaults only: criterion applies the command line after this config.
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500));
    targets = grouped_layers
}
criterion_main!(benches);
