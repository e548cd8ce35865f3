//! Where exactness holds, exact tests: a 1x1 stride-1 convolution IS the
//! GEMM `[n*h*w, c_in] x [c_in, c_out]` (bit for bit for im2col, which runs
//! exactly that sgemm; within tolerance of the reference for the others), and
//! im2col packing / col2im are bit-exact data movement, checked against a
//! naive gather / scatter.

mod common;

use common::{bits, poisoned, proptest_config, uniform};
use convnet_kernels::activation::{self, Activation};
use convnet_kernels::conv::im2col::{col2im_add, im2col_pack};
use convnet_kernels::conv::{self, ConvAlgo, ConvPass, ConvShape, Padding};
use convnet_kernels::gemm::{sgemm, sgemm_at, MatLayout};
use convnet_kernels::simd::SimdLevel;
use convnet_tensor::Rng;
use proptest::prelude::*;

/// Input coordinate of output `o`, tap `k` along an axis, if inside.
fn tap(o: usize, k: usize, stride: usize, dilation: usize, pad: usize, size: usize) -> Option<usize> {
    (o * stride + k * dilation).checked_sub(pad).filter(|&i| i < size)
}

/// The naive gather: column `(ky, kx, ci)` of row `(n, oy, ox)`, or `None` in the padding.
fn source(s: &ConvShape, row: usize, col: usize) -> Option<usize> {
    let (oh, ow) = (s.out_h(), s.out_w());
    let (n, oy, ox) = (row / (oh * ow), row / ow % oh, row % ow);
    let (ky, kx, ci) = (col / (s.kw * s.c_in), col / s.c_in % s.kw, col % s.c_in);
    let iy = tap(oy, ky, s.stride_h, s.dilation_h, s.pad_top, s.h)?;
    let ix = tap(ox, kx, s.stride_w, s.dilation_w, s.pad_left, s.w)?;
    Some(((n * s.h + iy) * s.w + ix) * s.c_in + ci)
}

fn shape() -> impl Strategy<Value = ConvShape> {
    let k = prop::sample::select(vec![1usize, 2, 3, 5]);
    (1usize..=3, 1usize..=12, 1usize..=12, 1usize..=9, k.clone(), k, 1usize..=3, 1usize..=3, 1usize..=2, any::<bool>())
        .prop_filter_map("shape must validate", |(n, h, w, c, kh, kw, sh, sw, d, same)| {
            let padding = if same { Padding::Same } else { Padding::Valid };
            ConvShape::nhwc(n, h, w, c).filter(kh, kw, 1).stride(sh, sw).dilation(d, d).padding(padding).build().ok()
        })
}

proptest! {
    #![proptest_config(proptest_config(48))]

    /// `im2col_pack` of any row range equals the naive gather, bit for bit
    /// (zeros in the padding), and overwrites all of its output.
    #[test]
    fn im2col_pack_is_the_naive_gather(s in shape(), seed in any::<u64>(), a in 0.0f64..1.0, b in 0.0f64..1.0) {
        let mut rng = Rng::new(seed);
        let x = uniform(s.input_len(), &mut rng);
        let total = s.n * s.out_h() * s.out_w();
        let first = (a * total as f64) as usize % total;
        let rows = 1 + (b * (total - first) as f64) as usize % (total - first);
        let k = s.kh * s.kw * s.c_in;
        let mut col = poisoned(rows * k);
        im2col_pack(&s, &x, first, rows, &mut col).unwrap();
        let want: Vec<f32> = (0..rows * k).map(|i| source(&s, first + i / k, i % k).map_or(0.0, |j| x[j])).collect();
        prop_assert_eq!(bits(&col), bits(&want), "{}", s);
    }

    /// `col2im_add` adds every column entry into the input element it was
    /// gathered from (rows in order), skipping padding: equal to the naive
    /// scatter bit for bit, and accumulating into what was there.
    #[test]
    fn col2im_add_is_the_naive_scatter(s in shape(), seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let total = s.n * s.out_h() * s.out_w();
        let k = s.kh * s.kw * s.c_in;
        let col = uniform(total * k, &mut rng);
        let start = uniform(s.input_len(), &mut rng);
        let mut got = start.clone();
        col2im_add(&s, &col, 0, total, &mut got).unwrap();
        let mut want = start;
        for r in 0..total {
            for c in 0..k {
                if let Some(j) = source(&s, r, c) {
                    want[j] += col[r * k + c];
                }
            }
        }
        prop_assert_eq!(bits(&got), bits(&want), "{}", s);
    }
}

#[test]
fn pack_and_col2im_reject_bad_ranges_and_lengths() {
    let s = ConvShape::nhwc(1, 4, 4, 2).filter(3, 3, 1).build().unwrap(); // 2x2 output, 4 rows, K = 18
    let x = vec![0.0; s.input_len()];
    let mut col = vec![0.0; 5 * 18];
    assert!(im2col_pack(&s, &x, 0, 5, &mut col).is_err());
    assert!(im2col_pack(&s, &x, 3, 2, &mut col[..36]).is_err());
    assert!(im2col_pack(&s, &x, usize::MAX, 2, &mut col[..36]).is_err());
    assert!(im2col_pack(&s, &x, 0, 2, &mut col[..35]).is_err());
    assert!(im2col_pack(&s, &x[1..], 0, 2, &mut col[..36]).is_err());
    let mut gx = vec![0.0; s.input_len()];
    assert!(col2im_add(&s, &col, 0, 5, &mut gx).is_err());
    assert!(col2im_add(&s, &col[..36], 0, 2, &mut gx[1..]).is_err());
}

/// 1x1 stride-1 convolutions are `[n*h*w, c_in] x [c_in, c_out]` GEMMs.
#[test]
fn one_by_one_conv_is_the_gemm() {
    let mut rng = Rng::new(11);
    for (n, h, w, ci, co) in
        [(1, 1, 1, 1, 1), (2, 5, 7, 3, 9), (3, 9, 9, 64, 64), (1, 13, 11, 40, 17), (8, 14, 14, 33, 70)]
    {
        let s = ConvShape::nhwc(n, h, w, ci).filter(1, 1, co).build().unwrap();
        let x = uniform(s.input_len(), &mut rng);
        let wt = uniform(s.filter_len(), &mut rng);
        let b = uniform(co, &mut rng);
        let rows = n * h * w;
        // Magnitudes for the tolerance of the algorithms that do not run this GEMM.
        let mut mag = poisoned(rows * co);
        let (ax, aw) = (common::abs(&x), common::abs(&wt));
        sgemm(1.0, &ax, MatLayout::dense(rows, ci), false, &aw, MatLayout::dense(ci, co), false, 0.0, &mut mag)
            .unwrap();
        for level in SimdLevel::available() {
            // The GEMM under this level (its micro-kernel, FMA or not, is the level's).
            let mut gemm = poisoned(rows * co);
            let (x_layout, w_layout) = (MatLayout::dense(rows, ci), MatLayout::dense(ci, co));
            sgemm_at(level, 1.0, &x, x_layout, false, &wt, w_layout, false, 0.0, &mut gemm).unwrap();
            let mut gemm_bias_relu = gemm.clone();
            activation::bias_add_at(level, &mut gemm_bias_relu, &b).unwrap();
            activation::relu_inplace_at(level, &mut gemm_bias_relu).unwrap();
            for algo in ConvAlgo::ALL {
                if conv::supports(algo, &s, ConvPass::Forward).is_err() {
                    continue;
                }
                let mut y = poisoned(s.output_len());
                conv::conv2d_forward_at(level, algo, &s, &x, &wt, None, Activation::Linear, &mut y).unwrap();
                let mut yb = poisoned(s.output_len());
                conv::conv2d_forward_at(level, algo, &s, &x, &wt, Some(&b), Activation::Relu, &mut yb).unwrap();
                let ctx = format!("{algo} on {s} under {}", level.name());
                if algo == ConvAlgo::Im2col {
                    assert_eq!(bits(&y), bits(&gemm), "{ctx}");
                    assert_eq!(bits(&yb), bits(&gemm_bias_relu), "{ctx} with bias and relu");
                } else {
                    let tol = 2.0 * common::tolerance(algo).max(common::tolerance(ConvAlgo::Im2col));
                    common::compare(&ctx, &y, &gemm, &mag, tol);
                }
            }
        }
    }
}
