//! Determinism: every convolution algorithm and pass, and every pooling
//! kernel, gives bit-identical results in rayon pools of 1, 2 and 3 threads
//! (work is split into fixed chunks, never by the thread count).

mod common;

use common::{bits, poisoned, Problem};
use convnet_kernels::activation::Activation;
use convnet_kernels::conv::{self, ConvAlgo, ConvPass, ConvShape, Padding};
use convnet_kernels::pool::{self, PoolShape};
use convnet_kernels::simd::SimdLevel;
use convnet_tensor::Rng;

/// Runs `f` in a fresh pool of `threads` threads.
fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
}

/// Every pass of every algorithm that runs `s` under `level`, as bit patterns.
fn all_passes(level: SimdLevel, p: &Problem) -> Vec<(String, Vec<u32>)> {
    let s = &p.s;
    let mut out = Vec::new();
    for algo in ConvAlgo::ALL.into_iter().chain([ConvAlgo::Auto]) {
        if conv::supports(algo, s, ConvPass::Forward).is_ok() {
            let mut y = poisoned(s.output_len());
            conv::conv2d_forward_at(level, algo, s, &p.x, &p.w, Some(&p.b), Activation::Relu, &mut y).unwrap();
            out.push((format!("{algo} forward"), bits(&y)));
        }
        if conv::supports(algo, s, ConvPass::BackwardData).is_ok() {
            let mut gx = poisoned(s.input_len());
            conv::conv2d_backward_data_at(level, algo, s, &p.gy, &p.w, &mut gx).unwrap();
            out.push((format!("{algo} backward_data"), bits(&gx)));
        }
        if conv::supports(algo, s, ConvPass::BackwardFilter).is_ok() {
            let mut gw = poisoned(s.filter_len());
            conv::conv2d_backward_filter_at(level, algo, s, &p.x, &p.gy, &mut gw).unwrap();
            out.push((format!("{algo} backward_filter"), bits(&gw)));
        }
    }
    let mut gb = poisoned(s.c_out);
    conv::conv2d_backward_bias(s, &p.gy, &mut gb).unwrap();
    out.push(("backward_bias".into(), bits(&gb)));
    out
}

fn assert_same_for_1_2_3_threads<T: PartialEq + std::fmt::Debug + Send>(what: &str, f: impl Fn() -> T + Sync) {
    let one = in_pool(1, &f);
    for threads in [2, 3] {
        assert!(in_pool(threads, &f) == one, "{what}: {threads} threads differ from 1");
    }
}

#[test]
fn conv_is_bit_identical_for_1_2_3_threads() {
    // Shapes big enough to be split into many chunks (batch and rows), one
    // per algorithm family's home ground, plus strided/dilated/same cases.
    let shapes = [
        ConvShape::nhwc(4, 28, 28, 1).filter(3, 3, 32),
        ConvShape::nhwc(4, 13, 13, 32).filter(3, 3, 64),
        ConvShape::nhwc(3, 14, 14, 48).filter(3, 3, 40).padding(Padding::Same),
        ConvShape::nhwc(2, 17, 15, 8).filter(5, 5, 12).stride(2, 2).padding(Padding::Same),
        ConvShape::nhwc(2, 16, 16, 6).filter(3, 3, 7).dilation(2, 2),
        ConvShape::nhwc(3, 9, 9, 64).filter(1, 1, 64),
    ];
    for level in SimdLevel::available() {
        for (i, s) in shapes.iter().enumerate() {
            let p = Problem::new(s.build().unwrap(), 77 + i as u64);
            let one = in_pool(1, || all_passes(level, &p));
            for threads in [2, 3] {
                let many = in_pool(threads, || all_passes(level, &p));
                assert_eq!(one.len(), many.len());
                for ((name, a), (_, b)) in one.iter().zip(&many) {
                    assert!(a == b, "{name} on {} under {}: {threads} threads differ from 1", p.s, level.name());
                }
            }
        }
    }
}

#[test]
fn pooling_is_bit_identical_for_1_2_3_threads() {
    let mut rng = Rng::new(5);
    for s in [
        PoolShape::new(64, 26, 26, 32, (2, 2), (2, 2), Padding::Valid).unwrap(),
        PoolShape::new(5, 11, 11, 19, (3, 3), (1, 1), Padding::Same).unwrap(),
    ] {
        let x: Vec<f32> = (0..s.input_len()).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let gy: Vec<f32> = (0..s.output_len()).map(|_| rng.uniform(-1.0, 1.0)).collect();
        for level in SimdLevel::available() {
            let at = format!("{s} under {}", level.name());
            assert_same_for_1_2_3_threads(&format!("max pool {at}"), || {
                let (mut y, mut am) = (poisoned(s.output_len()), vec![u32::MAX; s.output_len()]);
                pool::max_pool2d_forward_at(level, &s, &x, &mut y, &mut am).unwrap();
                let mut gx = poisoned(s.input_len());
                pool::max_pool2d_backward_at(level, &s, &gy, &am, &mut gx).unwrap();
                (bits(&y), am, bits(&gx))
            });
            assert_same_for_1_2_3_threads(&format!("avg pool {at}"), || {
                let mut y = poisoned(s.output_len());
                pool::avg_pool2d_forward_at(level, &s, &x, &mut y).unwrap();
                let mut gx = poisoned(s.input_len());
                pool::avg_pool2d_backward_at(level, &s, &gy, &mut gx).unwrap();
                (bits(&y), bits(&gx))
            });
            let (n, hw, c) = (s.n, s.h * s.w, s.c);
            assert_same_for_1_2_3_threads(&format!("global avg pool {at}"), || {
                let mut y = poisoned(n * c);
                pool::global_avg_pool_forward_at(level, n, hw, c, &x, &mut y).unwrap();
                let mut gx = poisoned(s.input_len());
                pool::global_avg_pool_backward_at(level, n, hw, c, &y, &mut gx).unwrap();
                (bits(&y), bits(&gx))
            });
        }
    }
}
