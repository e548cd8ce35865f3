//! Depthwise and grouped convolution on the layers of
//! `../shared/anchors/run.sh depthwise` (MobileNet v1's depthwise layers and a
//! ResNeXt-style 4-group layer, batch 8, 3x3 `same`): forward, backward-data
//! and backward-filter of the algorithm `Auto` picks (`depthwise` for the
//! depthwise layers, `im2col` for the grouped one).
//!
//! Throughput is in FLOPs of the direct convolution
//! (`2*N*Ho*Wo*Cout*(Cin/groups)*Kh*Kw`), so "Gelem/s" reads as GFLOP/s.
//!
//! ```text
//! cargo bench -p convnet-benches --bench depthwise
//! cargo bench -p convnet-benches --bench depthwise -- dw_112   # a filter
//! ```

use convnet_kernels::activation::Activation;
use convnet_kernels::conv::{self, ConvAlgo, ConvPass, ConvShape, Padding};
use convnet_tensor::Rng;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;

/// The anchor's layers: name, shape.
fn layers() -> Vec<(&'static str, ConvShape)> {
    let layer = |h: usize, c: usize, stride: usize, groups: usize| {
        ConvShape::new(8, h, h, c, c, 3, 3)
            .unwrap()
            .with_stride(stride, stride)
            .unwrap()
            .with_padding(Padding::Same)
            .unwrap()
            .with_groups(groups)
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
        let mut group = c.benchmark_group(format!("grouped/{name}"));
        group.throughput(Throughput::Elements(s.flops() as u64));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(300));
        group.measurement_time(Duration::from_millis(1500));
        for pass in [ConvPass::Forward, ConvPass::BackwardData, ConvPass::BackwardFilter] {
            let algo = conv::select(&s, pass);
            let id = BenchmarkId::new(algo.name(), pass.name());
            match pass {
                ConvPass::Forward => group.bench_function(id, |b| {
                    b.iter(|| {
                        conv::conv2d_forward(ConvAlgo::Auto, &s, &x, &w, None, Activation::Linear, &mut y).unwrap();
                        black_box(&y);
                    })
                }),
                ConvPass::BackwardData => group.bench_function(id, |b| {
                    b.iter(|| {
                        conv::conv2d_backward_data(ConvAlgo::Auto, &s, &gy, &w, &mut gx).unwrap();
                        black_box(&gx);
                    })
                }),
                ConvPass::BackwardFilter => group.bench_function(id, |b| {
                    b.iter(|| {
                        conv::conv2d_backward_filter(ConvAlgo::Auto, &s, &x, &gy, &mut gw).unwrap();
                        black_box(&gw);
                    })
                }),
            };
        }
        group.finish();
    }
}

criterion_group!(benches, grouped_layers);
criterion_main!(benches);
