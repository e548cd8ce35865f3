//! The fused kernel against the unfused `direct` + max pool (bit for bit) and
//! the f64 reference (within tolerance), on every SIMD level this CPU runs,
//! with both threadings; property tests over random shapes.

use super::*;
use crate::conv::{conv2d_forward_at, ConvAlgo, Padding};
use crate::pool::{max_pool2d_forward_at, PoolShape};
use proptest::prelude::*;

pub(crate) fn data(len: usize, seed: u32) -> Vec<f32> {
    (0..len).map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0).collect()
}

pub(crate) fn levels() -> Vec<SimdLevel> {
    let all = SimdLevel::available();
    if !all.contains(&SimdLevel::Avx512) {
        eprintln!("this CPU has no AVX-512; that level is skipped");
    }
    all
}

/// The unfused path the tape runs: `direct` with the activation fused (as
/// the tape does), then `max_pool2d_forward`.
pub(crate) fn unfused(
    level: SimdLevel,
    s: &ConvShape,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    act: Activation,
    pool: FusedPool,
) -> Vec<f32> {
    let mut conv = vec![f32::NAN; s.output_len()];
    conv2d_forward_at(level, ConvAlgo::Direct, s, x, w, b, act, &mut conv).unwrap();
    match pool {
        FusedPool::None => conv,
        FusedPool::Max2x2 => {
            let ps = PoolShape::new(s.n, s.out_h(), s.out_w(), s.c_out, (2, 2), (2, 2), Padding::Valid).unwrap();
            let mut y = vec![f32::NAN; ps.output_len()];
            let mut am = vec![0u32; y.len()];
            max_pool2d_forward_at(level, &ps, &conv, &mut y, &mut am).unwrap();
            y
        }
    }
}

/// Runs one case on every level and both threadings: bit-equal to the
/// unfused path, within `tol * terms` of the reference.
fn check(s: &ConvShape, act: Activation, pool: FusedPool, with_bias: bool, seed: u32) {
    let x = data(s.input_len(), seed);
    let w: Vec<f32> = data(s.filter_len(), seed ^ 0x55).iter().map(|v| v * 0.5).collect();
    let b = data(s.c_out, seed ^ 0xaa);
    let bias = with_bias.then_some(&b[..]);
    let conv0 = FusedConv::new(s, act, pool).unwrap();
    let len = conv0.output_len(s.n).unwrap();
    let mut want = vec![f32::NAN; len];
    conv2d_fused_reference(s, &x, &w, bias, act, pool, &mut want).unwrap();
    let terms = (s.kh * s.kw * s.c_in) as f32;
    for level in levels() {
        let conv = FusedConv::new_at(level, s, act, pool).unwrap();
        let direct = unfused(level, s, &x, &w, bias, act, pool);
        for threading in [Threading::Pool, Threading::CallingThread] {
            let mut got = vec![f32::NAN; len];
            conv.run(&x, s.n, &w, bias, &mut got, threading).unwrap();
            for (i, ((&g, &d), &r)) in got.iter().zip(&direct).zip(&want).enumerate() {
                assert_eq!(
                    g.to_bits(),
                    d.to_bits(),
                    "{s} {act:?} {pool:?} bias {with_bias} {level:?} {threading:?} element {i}: fused {g} vs direct {d}"
                );
                let tol = 4e-7 * terms * 2.0 + 1e-6;
                assert!((g - r).abs() <= tol, "{s} {level:?} element {i}: fused {g} vs reference {r}");
            }
        }
    }
}

fn shape(n: usize, h: usize, w: usize, ci: usize, co: usize, k: usize) -> ConvShape {
    ConvShape::new(n, h, w, ci, co, k, k).unwrap()
}

#[test]
fn chapter_layers_match_direct_and_pool_bit_for_bit() {
    for (s, pool) in [
        (shape(2, 28, 28, 1, 32, 3), FusedPool::Max2x2),
        (shape(2, 13, 13, 32, 64, 3), FusedPool::Max2x2),
        (shape(3, 5, 5, 64, 64, 3), FusedPool::None),
    ] {
        check(&s, Activation::Relu, pool, true, 7);
    }
}

#[test]
fn odd_shapes_partial_blocks_and_tiles() {
    let cases = [
        shape(1, 7, 9, 3, 5, 3),                                // c_out < one vector, odd output
        shape(2, 8, 8, 2, 20, 3),                               // a partial second block
        shape(1, 9, 11, 4, 17, 2).with_stride(2, 1).unwrap(),   // strides
        shape(2, 11, 10, 3, 8, 3).with_dilation(2, 2).unwrap(), // dilation
        shape(1, 6, 6, 5, 3, 1),                                // 1x1
        shape(1, 3, 3, 2, 9, 3),                                // 1x1 output: no pool possible
    ];
    for (i, s) in cases.iter().enumerate() {
        for act in [Activation::Linear, Activation::Relu] {
            for pool in [FusedPool::None, FusedPool::Max2x2] {
                if FusedConv::supports(s, act, pool).is_ok() {
                    check(s, act, pool, i % 2 == 0, i as u32);
                }
            }
        }
    }
}

#[test]
fn no_bias_equals_zero_bias() {
    let s = shape(1, 8, 8, 3, 12, 3);
    check(&s, Activation::Relu, FusedPool::Max2x2, false, 3);
    let conv = FusedConv::new(&s, Activation::Linear, FusedPool::None).unwrap();
    let (x, w) = (data(s.input_len(), 1), data(s.filter_len(), 2));
    let mut a = vec![f32::NAN; s.output_len()];
    let mut b = vec![f32::NAN; s.output_len()];
    conv.run(&x, 1, &w, None, &mut a, Threading::CallingThread).unwrap();
    conv.run(&x, 1, &w, Some(&[0.0; 12]), &mut b, Threading::CallingThread).unwrap();
    assert_eq!(a, b);
}

#[test]
fn a_plan_runs_any_batch() {
    let s = shape(1, 10, 10, 2, 8, 3);
    let conv = FusedConv::new(&s, Activation::Relu, FusedPool::Max2x2).unwrap();
    let s5 = s.with_batch(5).unwrap();
    let (x, w) = (data(s5.input_len(), 9), data(s.filter_len(), 4));
    let mut all = vec![f32::NAN; conv.output_len(5).unwrap()];
    conv.run(&x, 5, &w, None, &mut all, Threading::Pool).unwrap();
    let item = conv.output_len(1).unwrap();
    for i in 0..5 {
        let mut one = vec![f32::NAN; item];
        conv.run(&x[i * s.input_len()..][..s.input_len()], 1, &w, None, &mut one, Threading::CallingThread).unwrap();
        assert_eq!(one, all[i * item..][..item]);
    }
}

#[test]
fn what_cannot_run_fused_is_an_error() {
    let same = shape(1, 8, 8, 3, 4, 3).with_padding(Padding::Same).unwrap();
    assert!(matches!(
        FusedConv::new(&same, Activation::Relu, FusedPool::None),
        Err(Error::Unsupported { reason, .. }) if reason.contains("padding")
    ));
    let grouped = shape(1, 8, 8, 4, 4, 3).with_groups(2).unwrap();
    assert!(FusedConv::new(&grouped, Activation::Relu, FusedPool::None).is_err());
    let tiny = shape(1, 3, 3, 1, 1, 3);
    assert!(FusedConv::new(&tiny, Activation::Relu, FusedPool::Max2x2).is_err());
    // Wrong lengths are errors, not panics.
    let s = shape(1, 5, 5, 1, 2, 3);
    let conv = FusedConv::new(&s, Activation::Relu, FusedPool::None).unwrap();
    let mut y = vec![0.0; 18];
    assert!(conv.run(&[0.0; 24], 1, &[0.0; 18], None, &mut y, Threading::Pool).is_err());
    assert!(conv.run(&[0.0; 25], 1, &[0.0; 17], None, &mut y, Threading::Pool).is_err());
    assert!(conv.run(&[0.0; 25], 1, &[0.0; 18], Some(&[0.0]), &mut y, Threading::Pool).is_err());
    assert!(conv.run(&[0.0; 25], 1, &[0.0; 18], None, &mut y[..17], Threading::Pool).is_err());
    assert!(conv.output_len(usize::MAX).is_err());
    // A level this CPU cannot run is an error.
    for level in [SimdLevel::Avx512, SimdLevel::Avx2] {
        if !level.is_available() {
            assert!(matches!(FusedConv::new_at(level, &s, Activation::Relu, FusedPool::None), Err(Error::Simd(_))));
        }
    }
}

#[test]
fn one_shot_entry_points_agree_with_the_plan() {
    let s = shape(2, 9, 9, 3, 10, 3);
    let (x, w, b) = (data(s.input_len(), 5), data(s.filter_len(), 6), data(10, 7));
    let conv = FusedConv::new(&s, Activation::Relu, FusedPool::Max2x2).unwrap();
    let mut a = vec![f32::NAN; conv.output_len(2).unwrap()];
    let mut c = a.clone();
    conv.run(&x, 2, &w, Some(&b), &mut a, Threading::Pool).unwrap();
    conv2d_fused(&s, &x, &w, Some(&b), Activation::Relu, FusedPool::Max2x2, &mut c).unwrap();
    assert_eq!(a, c);
}

proptest! {
    // 24 cases by default; `PROPTEST_CASES=2000` runs a longer search.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]
    #[test]
    fn random_shapes_match_direct_and_reference(
        n in 1usize..3, h in 1usize..12, w in 1usize..12, ci in 1usize..6, co in 1usize..21,
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
        if FusedConv::supports(&s, act, pool).is_ok() {
            check(&s, act, pool, with_bias, seed);
        }
    }
}

#[test]
fn standalone_pool_matches_the_max_pool_kernel_bit_for_bit() {
    for (i, &(n, h, w, c)) in
        [(1, 2, 2, 1), (2, 11, 11, 64), (1, 7, 6, 13), (3, 5, 9, 17), (1, 26, 26, 32), (2, 3, 1, 4)].iter().enumerate()
    {
        let x = data(n * h * w * c, i as u32);
        let (oh, ow) = (h / 2, w / 2);
        let mut want = vec![f32::NAN; n * oh * ow * c];
        if !want.is_empty() {
            let ps = PoolShape::new(n, h, w, c, (2, 2), (2, 2), Padding::Valid).unwrap();
            let mut am = vec![0u32; want.len()];
            max_pool2d_forward_at(SimdLevel::Portable, &ps, &x, &mut want, &mut am).unwrap();
        }
        for level in levels() {
            for threading in [Threading::Pool, Threading::CallingThread] {
                let mut got = vec![f32::NAN; want.len()];
                max_pool_2x2_at(level, n, h, w, c, &x, &mut got, threading).unwrap();
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{n}x{h}x{w}x{c} {level:?} {threading:?}");
            }
        }
    }
    let mut y = [0.0; 2];
    assert!(max_pool_2x2(1, 4, 4, 1, &[0.0; 15], &mut y[..], Threading::Pool).is_err());
    assert!(max_pool_2x2(1, 4, 4, 1, &[0.0; 16], &mut y[..], Threading::Pool).is_err());
    assert!(max_pool_2x2(usize::MAX, 4, 4, 1, &[0.0; 16], &mut y[..], Threading::Pool).is_err());
}
