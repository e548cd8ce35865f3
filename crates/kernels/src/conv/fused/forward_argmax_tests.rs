//! The fused training forward (pooled map and argmax) against what it
//! replaces: `direct` (bias and activation fused) then
//! `pool::max_pool2d_forward`, bit for bit, values and argmax, on every SIMD
//! level this CPU runs, with both threadings and in rayon pools of 1, 2 and
//! 3 threads; the f64 reference within tolerance; ties, NaN, bad input;
//! property tests over shapes.

use super::tests::{data, levels};
use super::*;
use crate::conv::{conv2d_forward_at, ConvAlgo, Padding};
use crate::pool::{max_pool2d_forward_at, PoolShape};
use proptest::prelude::*;

fn shape(n: usize, h: usize, w: usize, ci: usize, co: usize, k: usize) -> ConvShape {
    ConvShape::new(n, h, w, ci, co, k, k).unwrap()
}

/// The unfused pair the tape ran: `direct` then the training max pool.
fn unfused(
    level: SimdLevel,
    s: &ConvShape,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    act: Activation,
) -> (Vec<f32>, Vec<u32>) {
    let mut conv = vec![f32::NAN; s.output_len()];
    conv2d_forward_at(level, ConvAlgo::Direct, s, x, w, b, act, &mut conv).unwrap();
    let ps = PoolShape::new(s.n, s.out_h(), s.out_w(), s.c_out, (2, 2), (2, 2), Padding::Valid).unwrap();
    let (mut y, mut am) = (vec![f32::NAN; ps.output_len()], vec![u32::MAX; ps.output_len()]);
    max_pool2d_forward_at(level, &ps, &conv, &mut y, &mut am).unwrap();
    (y, am)
}

fn fused(
    level: SimdLevel,
    s: &ConvShape,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    act: Activation,
    threading: Threading,
) -> (Vec<f32>, Vec<u32>) {
    let len = FusedPool::Max2x2.output_len(&s.with_batch(1).unwrap(), s.n).unwrap();
    let (mut y, mut am) = (vec![f32::NAN; len], vec![u32::MAX; len]);
    conv2d_max_pool_argmax_at(level, s, x, w, b, act, &mut y, &mut am, threading).unwrap();
    (y, am)
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
}

/// Every level, both threadings: bit-equal to the unfused pair (values and
/// argmax), values within tolerance of the f64 reference.
fn check_data(s: &ConvShape, x: &[f32], w: &[f32], b: Option<&[f32]>, act: Activation, reference: bool) {
    let mut want = vec![f32::NAN; FusedPool::Max2x2.output_len(&s.with_batch(1).unwrap(), s.n).unwrap()];
    conv2d_fused_reference(s, x, w, b, act, FusedPool::Max2x2, &mut want).unwrap();
    let terms = (s.kh * s.kw * s.c_in) as f32;
    for level in levels() {
        let (y0, a0) = unfused(level, s, x, w, b, act);
        for threading in [Threading::Pool, Threading::CallingThread] {
            let (y, a) = fused(level, s, x, w, b, act, threading);
            for (i, (&g, &d)) in y.iter().zip(&y0).enumerate() {
                assert_eq!(g.to_bits(), d.to_bits(), "{s} {act:?} {level:?} {threading:?} element {i}: {g} vs {d}");
            }
            assert_eq!(a, a0, "{s} {act:?} {level:?} {threading:?}: argmax");
            if reference {
                for (i, (&g, &r)) in y.iter().zip(&want).enumerate() {
                    let tol = 8e-7 * terms + 1e-6;
                    assert!((g - r).abs() <= tol, "{s} {level:?} element {i}: fused {g} vs reference {r}");
                }
            }
        }
    }
}

fn check(s: &ConvShape, act: Activation, with_bias: bool, seed: u32) {
    let x = data(s.input_len(), seed);
    let w: Vec<f32> = data(s.filter_len(), seed ^ 0x55).iter().map(|v| v * 0.5).collect();
    let b = data(s.c_out, seed ^ 0xaa);
    check_data(s, &x, &w, with_bias.then_some(&b[..]), act, true);
}

#[test]
fn the_chapter_first_layer_matches_direct_and_the_training_pool_bit_for_bit() {
    check(&shape(3, 28, 28, 1, 32, 3), Activation::Relu, true, 7);
    check(&shape(2, 28, 28, 1, 32, 3), Activation::Linear, false, 8);
}

#[test]
fn odd_shapes_partial_groups_and_tiles() {
    let cases = [
        shape(1, 7, 9, 3, 5, 3),                                // c_out < one vector, odd output
        shape(2, 8, 8, 2, 20, 3),                               // a partial group
        shape(1, 8, 8, 1, 48, 3),                               // one and a half AVX-512 groups
        shape(1, 9, 11, 4, 17, 2).with_stride(2, 1).unwrap(),   // strides
        shape(2, 11, 10, 3, 8, 3).with_dilation(2, 2).unwrap(), // dilation
        shape(1, 6, 6, 5, 3, 1),                                // 1x1
        shape(1, 4, 4, 1, 1, 3),                                // one window
        shape(5, 5, 5, 1, 33, 2),                               // tiles across images
    ];
    for (i, s) in cases.iter().enumerate() {
        for act in [Activation::Linear, Activation::Relu] {
            check(s, act, i % 2 == 0, i as u32);
        }
    }
}

#[test]
fn ties_and_nan_go_where_the_training_pool_sends_them() {
    // A constant image: the four conv outputs of every window are equal
    // (slot 0 wins); a zero filter with a negative bias: all relu zeros.
    let s = shape(2, 10, 9, 1, 19, 3);
    let w = data(s.filter_len(), 3);
    check_data(&s, &vec![0.25; s.input_len()], &w, None, Activation::Linear, true);
    check_data(&s, &vec![0.25; s.input_len()], &vec![0.0; w.len()], Some(&[-1.0; 19]), Activation::Relu, true);
    // NaN and infinities in the input: NaN conv outputs in every slot
    // position of some windows (the relu turns NaN into 0, as direct's).
    let mut x = data(s.input_len(), 5);
    for (i, v) in x.iter_mut().enumerate() {
        match i % 23 {
            0 => *v = f32::NAN,
            7 => *v = f32::INFINITY,
            11 => *v = f32::NEG_INFINITY,
            _ => {}
        }
    }
    for act in [Activation::Linear, Activation::Relu] {
        check_data(&s, &x, &w, Some(&data(19, 9)), act, false);
    }
}

#[test]
fn the_result_does_not_depend_on_the_thread_count() {
    let s = shape(9, 28, 28, 1, 32, 3);
    let (x, w, b) = (data(s.input_len(), 1), data(s.filter_len(), 2), data(s.c_out, 3));
    for level in levels() {
        let one = in_pool(1, || fused(level, &s, &x, &w, Some(&b), Activation::Relu, Threading::Pool));
        for threads in [2, 3] {
            let other = in_pool(threads, || fused(level, &s, &x, &w, Some(&b), Activation::Relu, Threading::Pool));
            assert_eq!(one.1, other.1, "{level:?} {threads} threads");
            assert!(one.0.iter().zip(&other.0).all(|(a, b)| a.to_bits() == b.to_bits()), "{level:?} {threads}");
        }
    }
}

#[test]
fn bad_input_is_an_error() {
    let s = shape(2, 6, 6, 1, 4, 3);
    let (x, w, b) = (data(s.input_len(), 1), data(s.filter_len(), 2), data(4, 3));
    let (mut y, mut am) = (vec![0.0; 2 * 2 * 2 * 4], vec![0u32; 2 * 2 * 2 * 4]);
    let run = |s: &ConvShape, x: &[f32], w: &[f32], b: Option<&[f32]>, y: &mut [f32], am: &mut [u32]| {
        conv2d_max_pool_argmax_at(SimdLevel::Portable, s, x, w, b, Activation::Relu, y, am, Threading::Pool)
    };
    assert!(run(&s, &x, &w, Some(&b), &mut y, &mut am).is_ok());
    assert!(run(&s, &x[1..], &w, Some(&b), &mut y, &mut am).is_err());
    assert!(run(&s, &x, &w[1..], Some(&b), &mut y, &mut am).is_err());
    assert!(run(&s, &x, &w, Some(&b[1..]), &mut y, &mut am).is_err());
    assert!(run(&s, &x, &w, Some(&b), &mut y[1..], &mut am).is_err());
    assert!(run(&s, &x, &w, Some(&b), &mut y, &mut am[1..]).is_err());
    let padded = s.with_padding(Padding::Same).unwrap();
    let e = run(&padded, &x, &w, Some(&b), &mut y, &mut am).unwrap_err();
    assert!(e.to_string().contains("padding"), "{e}");
    let tiny = shape(1, 3, 4, 1, 4, 3); // a 1x2 conv output: no 2x2 window
    assert!(max_pool_argmax_supports(&tiny, Activation::Relu).is_err());
    assert!(run(&tiny, &x[..12], &w, Some(&b), &mut [], &mut []).is_err());
    let grouped = ConvShape { groups: 2, c_in: 2, c_out: 4, ..s };
    assert!(max_pool_argmax_supports(&grouped, Activation::Relu).is_err());
    let huge = ConvShape { h: 1 << 20, w: 1 << 12, c_out: 4, ..s };
    assert!(max_pool_argmax_supports(&huge, Activation::Relu).unwrap_err().contains("u32"));
}

proptest! {
    // 24 cases by default; `PROPTEST_CASES=2000` runs a longer search.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_shapes_match_the_unfused_pair(
        n in 1usize..3, k in 1usize..4, eh in 1usize..9, ew in 1usize..9, ci in 1usize..4, co in 1usize..40,
        stride in 1usize..3, relu in any::<bool>(), bias in any::<bool>(), seed in any::<u32>(),
    ) {
        let s = shape(n, k + eh * stride, k + ew * stride, ci, co, k).with_stride(stride, stride).unwrap();
        prop_assume!(s.out_h() >= 2 && s.out_w() >= 2);
        let act = if relu { Activation::Relu } else { Activation::Linear };
        check(&s, act, bias, seed);
    }
}
