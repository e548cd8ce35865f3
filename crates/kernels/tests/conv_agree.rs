//! Every convolution algorithm, under every SIMD level this CPU has, agrees
//! with the f64 `reference` on forward (with and without bias, with relu),
//! backward-data and backward-filter, within a tolerance per algorithm scaled
//! by the magnitude of each sum (`docs/ALGORITHMS.md`, "Tolerances in the
//! property suite"). Outputs are poisoned with NaN before every call. Each
//! call names its SIMD level (`conv2d_*_at`), so the tests run in parallel
//! without touching process-global state.

mod common;

use common::{check_every_algo_and_level, proptest_config, Oracle, Problem, Worst};
use convnet_kernels::conv::{ConvAlgo, ConvPass, ConvShape, ConvShapeBuilder, Padding};
use proptest::prelude::*;

/// Cap on a case's direct-convolution FLOPs, so the f64 reference (run seven
/// times per case) keeps the suite at a few seconds.
const MAX_CASE_FLOPS: usize = 6_000_000;

/// Builds a shape, shrinking `c_out` (to a multiple of the groups) until the
/// case fits [`MAX_CASE_FLOPS`]; `None` if it does not validate.
fn capped(shape: ConvShapeBuilder) -> Option<ConvShape> {
    let mut s = shape.build().ok()?;
    if s.flops() > MAX_CASE_FLOPS {
        let c_out = (s.c_out * MAX_CASE_FLOPS / s.flops()).max(1);
        s.c_out = (c_out / s.groups).max(1) * s.groups;
    }
    s.validate().ok()?;
    Some(s)
}

/// `same` or `valid`.
fn padding(same: bool) -> Padding {
    if same {
        Padding::Same
    } else {
        Padding::Valid
    }
}

/// Random shapes: batch 1-4, h/w 1-20, channels 1-40, windows 1/2/3/5
/// (square mostly), stride 1-3, dilation 2 one time in five, valid or same;
/// only shapes that validate.
fn any_shape() -> impl Strategy<Value = ConvShape> {
    let window = prop::sample::select(vec![1usize, 2, 3, 5]);
    (
        (1usize..=4, 1usize..=20, 1usize..=20, 1usize..=40, 1usize..=40),
        (window.clone(), window, any::<bool>()),
        (1usize..=3, 1usize..=3, 0u8..10, any::<bool>()),
    )
        .prop_filter_map("shape must validate", |((n, h, w, ci, co), (kh, kw, square), (sh, sw, dil, same))| {
            let k = if square { (kh, kh) } else { (kh, kw) };
            let dilation = match dil {
                0 => (2, 2),
                1 => (2, 1),
                _ => (1, 1),
            };
            capped(
                ConvShape::nhwc(n, h, w, ci)
                    .filter(k.0, k.1, co)
                    .stride(sh, sw)
                    .dilation(dilation.0, dilation.1)
                    .padding(padding(same)),
            )
        })
}

/// Winograd's home ground: 3x3, stride 1, h and w 3..=14 (every residue
/// mod 4, so every partial-tile case of F(2x2) and F(4x4)), valid or same.
fn winograd_shape() -> impl Strategy<Value = ConvShape> {
    (1usize..=3, 3usize..=14, 3usize..=14, 1usize..=40, 1usize..=40, any::<bool>())
        .prop_filter_map("shape must validate", |(n, h, w, ci, co, same)| {
            capped(ConvShape::nhwc(n, h, w, ci).filter(3, 3, co).padding(padding(same)))
        })
}

/// Grouped shapes: 1-6 groups of 1-6 input and 1-4 output channels each,
/// batch 1-3, h/w 1-14, windows 1/2/3/5, stride 1-2, dilation 2 one time in
/// five, valid or same. One input channel per group makes them depthwise.
fn grouped_shape() -> impl Strategy<Value = ConvShape> {
    let window = prop::sample::select(vec![1usize, 2, 3, 5]);
    (
        (1usize..=3, 1usize..=14, 1usize..=14),
        (1usize..=6, 1usize..=6, 1usize..=4),
        (window, 1usize..=2, 0u8..5, any::<bool>()),
    )
        .prop_filter_map("shape must validate", |((n, h, w), (g, cig, cog), (k, st, dil, same))| {
            let d = if dil == 0 { 2 } else { 1 };
            let s = ConvShape::nhwc(n, h, w, g * cig).filter(k, k, g * cog).stride(st, st).dilation(d, d);
            capped(s.padding(padding(same)).groups(g))
        })
}

/// Depthwise shapes (`groups == c_in`) with multiplier 1-3, channels 1-40
/// (below, at and above every vector width), windows 1/3/5, stride 1-2.
fn depthwise_shape() -> impl Strategy<Value = ConvShape> {
    let window = prop::sample::select(vec![1usize, 3, 5]);
    ((1usize..=3, 1usize..=16, 1usize..=16), (1usize..=40, 1usize..=3), (window, 1usize..=2, 0u8..5, any::<bool>()))
        .prop_filter_map("shape must validate", |((n, h, w), (c, m), (k, st, dil, same))| {
            let d = if dil == 0 { 2 } else { 1 };
            let s = ConvShape::nhwc(n, h, w, c).filter(k, k, c * m).stride(st, st).dilation(d, d);
            capped(s.padding(padding(same)).groups(c))
        })
}

/// Checks every algorithm (and `Auto`) on one problem under every level.
fn check_everything(s: ConvShape, seed: u64, worst: &mut Worst) {
    let p = Problem::new(s, seed);
    check_every_algo_and_level(&p, &Oracle::new(&p), &format!("seed {seed}"), worst);
}

proptest! {
    #![proptest_config(proptest_config(48))]

    #[test]
    fn every_algorithm_agrees_with_reference(s in any_shape(), seed in any::<u64>()) {
        check_everything(s, seed, &mut Worst::default());
    }

    #[test]
    fn winograd_tiles_at_every_residue_agree(s in winograd_shape(), seed in any::<u64>()) {
        check_everything(s, seed, &mut Worst::default());
    }
}

proptest! {
    #![proptest_config(proptest_config(32))]

    #[test]
    fn grouped_shapes_agree_with_reference(s in grouped_shape(), seed in any::<u64>()) {
        check_everything(s, seed, &mut Worst::default());
    }

    #[test]
    fn depthwise_shapes_with_multiplier_agree_with_reference(s in depthwise_shape(), seed in any::<u64>()) {
        check_everything(s, seed, &mut Worst::default());
    }
}

/// `supports()` is honest: Direct and Im2col run every valid shape, Winograd
/// every 3x3 stride-1 undilated shape (forward and backward-data), and an
/// explicit algorithm that refuses a shape says which shape.
#[test]
fn supports_accepts_what_it_must() {
    let shapes = [
        capped(ConvShape::nhwc(1, 7, 9, 3).filter(3, 3, 5).padding(Padding::Same)).unwrap(),
        capped(ConvShape::nhwc(2, 6, 5, 4).filter(3, 3, 2)).unwrap(),
        capped(ConvShape::nhwc(1, 9, 9, 2).filter(5, 5, 3).stride(2, 2).padding(Padding::Same)).unwrap(),
        capped(ConvShape::nhwc(1, 9, 9, 2).filter(3, 3, 3).dilation(2, 2)).unwrap(),
        capped(ConvShape::nhwc(3, 1, 1, 1).filter(1, 1, 1)).unwrap(),
        capped(ConvShape::nhwc(1, 20, 20, 40).filter(2, 2, 1).stride(3, 3).padding(Padding::Same)).unwrap(),
    ];
    for s in shapes {
        for algo in ConvAlgo::ALL {
            for pass in [ConvPass::Forward, ConvPass::BackwardData, ConvPass::BackwardFilter] {
                let runs = common::runs(algo, &s, pass);
                if !runs {
                    let msg = convnet_kernels::conv::supports(algo, &s, pass).unwrap_err().to_string();
                    assert!(msg.contains(&s.to_string()), "{msg}");
                }
            }
        }
    }
}

/// Chapter and VGG-like layers cut down to test size, plus the worst error
/// ratio per algorithm and pass (printed with `--nocapture`; the numbers in
/// `docs/ALGORITHMS.md` come from here).
#[test]
fn layer_like_shapes_and_measured_error() {
    let mut worst = Worst::default();
    let shapes = [
        capped(ConvShape::nhwc(2, 28, 28, 1).filter(3, 3, 32)).unwrap(),
        capped(ConvShape::nhwc(2, 13, 13, 32).filter(3, 3, 64)).unwrap(),
        capped(ConvShape::nhwc(2, 5, 5, 64).filter(3, 3, 64)).unwrap(),
        capped(ConvShape::nhwc(1, 14, 14, 64).filter(3, 3, 64).padding(Padding::Same)).unwrap(),
        capped(ConvShape::nhwc(1, 7, 7, 128).filter(3, 3, 128).padding(Padding::Same)).unwrap(),
        // MobileNet / ResNeXt-like grouped and depthwise layers, cut down.
        capped(ConvShape::nhwc(1, 14, 14, 32).filter(3, 3, 32).padding(Padding::Same).groups(32)).unwrap(),
        capped(ConvShape::nhwc(1, 15, 15, 64).filter(3, 3, 64).stride(2, 2).padding(Padding::Same).groups(64)).unwrap(),
        capped(ConvShape::nhwc(1, 10, 10, 16).filter(3, 3, 32).padding(Padding::Same).groups(4)).unwrap(),
    ];
    for (i, s) in shapes.into_iter().enumerate() {
        check_everything(s, 1000 + i as u64, &mut worst);
    }
    for ((algo, pass), r) in &worst.0 {
        println!("worst |err| / sum|a||b|: {algo:12} {pass:16} {r:.3e}");
    }
}
