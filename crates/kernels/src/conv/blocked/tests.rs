//! The blocked kernel against the unfused `direct` + max pool and against
//! `conv::fused` (bit for bit) and the f64 reference (within tolerance), on
//! every SIMD level this CPU runs; property tests over random shapes.

use super::*;
use crate::conv::fused::tests::{data, levels, unfused};
use crate::conv::fused::{conv2d_fused_reference, FusedConv, Threading};
use crate::conv::Padding;
use proptest::prelude::*;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// One case on every level: bit-equal to the unfused path and to
/// `conv::fused`, within the fused kernel's tolerance of the reference.
fn check(s: &ConvShape, act: Activation, pool: FusedPool, with_bias: bool, seed: u32) {
    let x = data(s.input_len(), seed);
    let w: Vec<f32> = data(s.filter_len(), seed ^ 0x55).iter().map(|v| v * 0.5).collect();
    let b = data(s.c_out, seed ^ 0xaa);
    let bias = with_bias.then_some(&b[..]);
    let len = BlockedConv::new(s, act, pool).unwrap().output_len(s.n).unwrap();
    let mut want = vec![f32::NAN; len];
    conv2d_fused_reference(s, &x, &w, bias, act, pool, &mut want).unwrap();
    let terms = (s.kh * s.kw * s.c_in) as f32;
    for level in levels() {
        let conv = BlockedConv::new_at(level, s, act, pool).unwrap();
        let mut got = vec![f32::NAN; len];
        conv.run(&x, s.n, &w, bias, &mut got).unwrap();
        let direct = unfused(level, s, &x, &w, bias, act, pool);
        assert_eq!(bits(&got), bits(&direct), "{s} {act:?} {pool:?} bias {with_bias} {level:?}: blocked vs direct");
        let mut fused = vec![f32::NAN; len];
        FusedConv::new_at(level, s, act, pool)
            .unwrap()
            .run(&x, s.n, &w, bias, &mut fused, Threading::CallingThread)
            .unwrap();
        assert_eq!(bits(&got), bits(&fused), "{s} {level:?}: blocked vs fused");
        for (i, (&g, &r)) in got.iter().zip(&want).enumerate() {
            let tol = 8e-7 * terms + 1e-6;
            assert!((g - r).abs() <= tol, "{s} {level:?} element {i}: blocked {g} vs reference {r}");
        }
    }
}

fn shape(n: usize, h: usize, w: usize, ci: usize, co: usize, k: usize) -> ConvShape {
    ConvShape::new(n, h, w, ci, co, k, k).unwrap()
}

#[test]
fn chapter_layers_match_direct_and_pool_bit_for_bit() {
    for n in [1, 2] {
        for (s, pool) in [
            (shape(n, 28, 28, 1, 32, 3), FusedPool::Max2x2),
            (shape(n, 13, 13, 32, 64, 3), FusedPool::Max2x2),
            (shape(n, 5, 5, 64, 64, 3), FusedPool::None),
        ] {
            check(&s, Activation::Relu, pool, true, 7);
        }
    }
}

#[test]
fn tile_sizes_cover_the_rest_with_the_smallest_that_fits() {
    assert_eq!(tile_size(AVX512_TILES, 100, false), 8);
    assert_eq!(tile_size(AVX512_TILES, 9, false), 8);
    assert_eq!(tile_size(AVX512_TILES, 5, false), 8);
    assert_eq!(tile_size(AVX512_TILES, 3, false), 4);
    assert_eq!(tile_size(AVX512_TILES, 4, true), 4);
    assert_eq!(tile_size(AVX512_TILES, 12, true), 8);
    for sizes in [AVX512_TILES, AVX2_TILES, PORTABLE_TILES] {
        assert!(sizes.iter().all(|&p| p <= MAX_P && [2, 4, 6, 8].contains(&p)), "instantiated sizes only");
    }
    assert_eq!(tile_size(AVX2_TILES, 5, false), 6);
    assert_eq!(tile_size(AVX2_TILES, 1, false), 2);
    assert_eq!(tile_size(AVX2_TILES, 12, true), 4, "with a pool, only whole windows");
    assert_eq!(tile_size(PORTABLE_TILES, 1, false), 4);
}

#[test]
fn odd_shapes_partial_blocks_and_tiles() {
    let cases = [
        shape(1, 7, 9, 3, 5, 3),                                // c_out < one vector, odd output
        shape(2, 8, 8, 2, 20, 3),                               // a partial second vector
        shape(1, 9, 11, 4, 17, 2).with_stride(2, 1).unwrap(),   // strides
        shape(2, 11, 10, 3, 8, 3).with_dilation(2, 2).unwrap(), // dilation
        shape(1, 6, 6, 5, 3, 1),                                // 1x1
        shape(1, 3, 3, 2, 9, 3),                                // 1x1 output: no pool possible
        shape(1, 9, 9, 2, 48, 3),                               // two vectors, then one (AVX-512)
        shape(1, 10, 10, 3, 40, 3),                             // two, one, and a partial one (AVX2)
        shape(3, 4, 7, 2, 33, 2),                               // tiles across rows and images
    ];
    for (i, s) in cases.iter().enumerate() {
        for act in [Activation::Linear, Activation::Relu] {
            for pool in [FusedPool::None, FusedPool::Max2x2] {
                if BlockedConv::supports(s, act, pool).is_ok() {
                    check(s, act, pool, i % 2 == 0, i as u32);
                }
            }
        }
    }
}

#[test]
fn no_bias_equals_zero_bias() {
    let s = shape(1, 8, 8, 3, 40, 3);
    let conv = BlockedConv::new(&s, Activation::Linear, FusedPool::None).unwrap();
    let (x, w) = (data(s.input_len(), 1), data(s.filter_len(), 2));
    let mut a = vec![f32::NAN; s.output_len()];
    let mut b = vec![f32::NAN; s.output_len()];
    conv.run(&x, 1, &w, None, &mut a).unwrap();
    conv.run(&x, 1, &w, Some(&[0.0; 40]), &mut b).unwrap();
    assert_eq!(bits(&a), bits(&b));
}

/// The plan holds no weights: the filter passed on each call is the one used.
#[test]
fn new_weights_are_used_on_the_next_call() {
    let s = shape(1, 7, 7, 2, 32, 3);
    let conv = BlockedConv::new(&s, Activation::Relu, FusedPool::Max2x2).unwrap();
    let x = data(s.input_len(), 3);
    let mut w = data(s.filter_len(), 4);
    let mut first = vec![f32::NAN; conv.output_len(1).unwrap()];
    conv.run(&x, 1, &w, None, &mut first).unwrap();
    w.iter_mut().for_each(|v| *v *= -2.0);
    let mut second = first.clone();
    conv.run(&x, 1, &w, None, &mut second).unwrap();
    let mut want = first.clone();
    conv2d_blocked(&s, &x, &w, None, Activation::Relu, FusedPool::Max2x2, &mut want).unwrap();
    assert_eq!(bits(&second), bits(&want));
    assert_ne!(bits(&first), bits(&second));
}

#[test]
fn a_plan_runs_any_batch() {
    let s = shape(1, 10, 10, 2, 8, 3);
    let conv = BlockedConv::new(&s, Activation::Relu, FusedPool::Max2x2).unwrap();
    let s5 = s.with_batch(5).unwrap();
    let (x, w) = (data(s5.input_len(), 9), data(s.filter_len(), 4));
    let mut all = vec![f32::NAN; conv.output_len(5).unwrap()];
    conv.run(&x, 5, &w, None, &mut all).unwrap();
    let item = conv.output_len(1).unwrap();
    for i in 0..5 {
        let mut one = vec![f32::NAN; item];
        conv.run(&x[i * s.input_len()..][..s.input_len()], 1, &w, None, &mut one).unwrap();
        assert_eq!(bits(&one), bits(&all[i * item..][..item]));
    }
}

#[test]
fn what_cannot_run_is_an_error() {
    let same = shape(1, 8, 8, 3, 4, 3).with_padding(Padding::Same).unwrap();
    assert!(matches!(
        BlockedConv::new(&same, Activation::Relu, FusedPool::None),
        Err(Error::Unsupported { reason, .. }) if reason.contains("padding")
    ));
    let grouped = shape(1, 8, 8, 4, 4, 3).with_groups(2).unwrap();
    assert!(BlockedConv::new(&grouped, Activation::Relu, FusedPool::None).is_err());
    let tiny = shape(1, 3, 3, 1, 1, 3);
    assert!(BlockedConv::new(&tiny, Activation::Relu, FusedPool::Max2x2).is_err());
    // Wrong lengths are errors, not panics.
    let s = shape(1, 5, 5, 1, 2, 3);
    let conv = BlockedConv::new(&s, Activation::Relu, FusedPool::None).unwrap();
    let mut y = vec![0.0; 18];
    assert!(conv.run(&[0.0; 24], 1, &[0.0; 18], None, &mut y).is_err());
    assert!(conv.run(&[0.0; 25], 1, &[0.0; 17], None, &mut y).is_err());
    assert!(conv.run(&[0.0; 25], 1, &[0.0; 18], Some(&[0.0]), &mut y).is_err());
    assert!(conv.run(&[0.0; 25], 1, &[0.0; 18], None, &mut y[..17]).is_err());
    assert!(conv.output_len(usize::MAX).is_err());
    for level in [SimdLevel::Avx512, SimdLevel::Avx2] {
        if !level.is_available() {
            assert!(matches!(BlockedConv::new_at(level, &s, Activation::Relu, FusedPool::None), Err(Error::Simd(_))));
        }
    }
}

proptest! {
    // 24 cases by default; `PROPTEST_CASES=2000` runs a longer search.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]
    #[test]
    fn random_shapes_match_direct_fused_and_reference(
        n in 1usize..3, h in 1usize..12, w in 1usize..12, ci in 1usize..6, co in 1usize..70,
        kh in 1usize..4, kw in 1usize..4, sh in 1usize..3, sw in 1usize..3, dh in 1usize..3, dw in 1usize..3,
        relu in any::<bool>(), pooled in any::<bool>(), with_bias in any::<bool>(), seed in any::<u32>(),
    ) {
        let s = ConvShape::new(n, h, w, ci, co, kh, kw)
            .and_then(|s| s.with_stride(sh, sw))
            .and_then(|s| s.with_dilation(dh, dw));
        let Ok(s) = s else { return Ok(()) };
        if s.validate().is_err() {
            return Ok(());
        }
        let act = if relu { Activation::Relu } else { Activation::Linear };
        let pool = if pooled { FusedPool::Max2x2 } else { FusedPool::None };
        if BlockedConv::supports(&s, act, pool).is_ok() {
            check(&s, act, pool, with_bias, seed);
        }
    }
}
