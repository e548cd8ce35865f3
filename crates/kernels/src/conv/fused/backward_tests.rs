//! The fused pooled backward-filter against what it replaces: the max-pool
//! backward scatter, the relu mask and the f64 reference backward-filter and
//! bias passes, on every SIMD level this CPU runs, in rayon pools of 1, 2
//! and 3 threads (bit-identical across them); property tests over shapes.

use super::*;
use crate::conv::{reference, Padding};
use crate::pool::{max_pool2d_backward_at, max_pool2d_forward_at, PoolShape};
use proptest::prelude::*;

fn data(len: usize, seed: u32) -> Vec<f32> {
    (0..len).map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0).collect()
}

fn pool_of(s: &ConvShape) -> PoolShape {
    PoolShape::new(s.n, s.out_h(), s.out_w(), s.c_out, (2, 2), (2, 2), Padding::Valid).unwrap()
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
}

/// A training problem: the forward pass (reference conv, the relu when
/// `relu`, the max pool with its argmax) on generated data, and a pooled
/// gradient.
struct Case {
    s: ConvShape,
    p: PoolShape,
    x: Vec<f32>,
    y: Vec<f32>,
    argmax: Vec<u32>,
    g: Vec<f32>,
    relu: bool,
}

impl Case {
    fn new(s: ConvShape, relu: bool, seed: u32) -> Case {
        let x = data(s.input_len(), seed);
        let w: Vec<f32> = data(s.filter_len(), seed ^ 0x55).iter().map(|v| v * 0.5).collect();
        let b = data(s.c_out, seed ^ 0xaa);
        let mut conv = vec![0.0; s.output_len()];
        reference::forward(&s, &x, &w, Some(&b), &mut conv);
        if relu {
            conv.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        let p = pool_of(&s);
        let (mut y, mut argmax) = (vec![0.0; p.output_len()], vec![0u32; p.output_len()]);
        max_pool2d_forward_at(SimdLevel::Portable, &p, &conv, &mut y, &mut argmax).unwrap();
        let g = data(y.len(), seed ^ 0x33);
        Case { s, p, x, y, argmax, g, relu }
    }

    fn pooled(&self) -> PooledGradient<'_> {
        PooledGradient { grad: &self.g, argmax: &self.argmax, relu_output: self.relu.then_some(&self.y[..]) }
    }

    /// The unfused oracle: mask, scatter, f64 reference passes; and a bound
    /// on each result's magnitude (the same sums over absolute values).
    fn oracle(&self) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let masked: Vec<f32> =
            self.g.iter().zip(&self.y).map(|(&g, &y)| if self.relu && y <= 0.0 { 0.0 } else { g }).collect();
        let mut dy = vec![0.0; self.s.output_len()];
        max_pool2d_backward_at(SimdLevel::Portable, &self.p, &masked, &self.argmax, &mut dy).unwrap();
        let (mut dw, mut db) = (vec![0.0; self.s.filter_len()], vec![0.0; self.s.c_out]);
        reference::backward_filter(&self.s, &self.x, &dy, &mut dw);
        reference::backward_bias(&self.s, &dy, &mut db);
        let (ax, ady): (Vec<f32>, Vec<f32>) =
            (self.x.iter().map(|v| v.abs()).collect(), dy.iter().map(|v| v.abs()).collect());
        let (mut bw, mut bb) = (vec![0.0; self.s.filter_len()], vec![0.0; self.s.c_out]);
        reference::backward_filter(&self.s, &ax, &ady, &mut bw);
        reference::backward_bias(&self.s, &ady, &mut bb);
        (dw, db, bw, bb)
    }

    fn run(&self, level: SimdLevel) -> (Vec<f32>, Vec<f32>) {
        let (mut dw, mut db) = (vec![f32::NAN; self.s.filter_len()], vec![f32::NAN; self.s.c_out]);
        conv2d_backward_filter_max_pooled_at(level, &self.s, &self.p, &self.x, self.pooled(), &mut dw, Some(&mut db))
            .unwrap();
        (dw, db)
    }
}

fn close(what: &str, got: &[f32], want: &[f32], bound: &[f32]) {
    for (i, ((&g, &w), &b)) in got.iter().zip(want).zip(bound).enumerate() {
        let tol = 2e-5 * b + 1e-6;
        assert!((g - w).abs() <= tol, "{what} element {i}: fused {g} vs reference {w} (bound {b})");
    }
}

/// Every level against the oracle, and bit-identical in pools of 1, 2, 3 threads.
fn check(s: ConvShape, relu: bool, seed: u32, threads: &[usize]) {
    let case = Case::new(s, relu, seed);
    let (dw, db, bw, bb) = case.oracle();
    for level in SimdLevel::available() {
        let one = in_pool(1, || case.run(level));
        close(&format!("{s} relu {relu} {level:?} filter"), &one.0, &dw, &bw);
        close(&format!("{s} relu {relu} {level:?} bias"), &one.1, &db, &bb);
        for &t in threads {
            let other = in_pool(t, || case.run(level));
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&other.0), bits(&one.0), "{s} {level:?}: {t} threads differ from 1 (filter)");
            assert_eq!(bits(&other.1), bits(&one.1), "{s} {level:?}: {t} threads differ from 1 (bias)");
        }
    }
}

fn shape(n: usize, h: usize, w: usize, ci: usize, co: usize, k: usize) -> ConvShape {
    ConvShape::new(n, h, w, ci, co, k, k).unwrap()
}

#[test]
fn the_chapter_first_layer_on_every_level_and_thread_count() {
    // Several chunks per call: 6 images of 13 pooled rows.
    check(shape(6, 28, 28, 1, 32, 3), true, 1, &[2, 3]);
    check(ConvShape::new(96, 28, 28, 1, 32, 3, 3).unwrap(), true, 2, &[2, 3]);
}

#[test]
fn partial_channel_blocks_odd_maps_and_tap_groups() {
    // c_out not a multiple of 8 or 16; odd conv outputs (last row/column
    // dropped by the pool); 3 channels (27 taps: three groups); a 2x2
    // filter (4 taps: one padded group); no relu.
    check(shape(2, 9, 11, 1, 5, 3), true, 3, &[2]);
    check(shape(3, 12, 10, 3, 20, 3), true, 4, &[3]);
    check(shape(2, 8, 9, 1, 17, 2), false, 5, &[2]);
    check(shape(1, 5, 5, 2, 40, 3), false, 6, &[]);
}

#[test]
fn strided_and_dilated_convolutions() {
    let s = ConvShape::nhwc(2, 15, 14, 2).filter(3, 3, 12).stride(2, 2).build().unwrap();
    check(s, true, 7, &[2]);
    let s = ConvShape::nhwc(2, 13, 12, 1).filter(3, 3, 9).dilation(2, 1).build().unwrap();
    check(s, true, 8, &[2]);
}

#[test]
fn bad_arguments_are_errors() {
    let case = Case::new(shape(1, 6, 6, 1, 4, 3), true, 9);
    let (s, p) = (case.s, case.p);
    let (mut dw, mut db) = (vec![0.0; s.filter_len()], vec![0.0; 4]);
    let run = |pooled: PooledGradient, x: &[f32], dw: &mut [f32], db: &mut [f32], s: &ConvShape, p: &PoolShape| {
        conv2d_backward_filter_max_pooled_at(SimdLevel::Portable, s, p, x, pooled, dw, Some(db))
    };
    run(case.pooled(), &case.x, &mut dw, &mut db, &s, &p).unwrap();
    assert!(run(case.pooled(), &case.x[1..], &mut dw, &mut db, &s, &p).is_err());
    assert!(run(case.pooled(), &case.x, &mut dw[1..], &mut db, &s, &p).is_err());
    assert!(run(case.pooled(), &case.x, &mut dw, &mut db[1..], &s, &p).is_err());
    let short = PooledGradient { grad: &case.g[1..], ..case.pooled() };
    assert!(run(short, &case.x, &mut dw, &mut db, &s, &p).is_err());
    // An argmax outside its window.
    let mut argmax = case.argmax.clone();
    argmax[3] = argmax[3].wrapping_add(1);
    let bad = PooledGradient { argmax: &argmax, ..case.pooled() };
    let e = run(bad, &case.x, &mut dw, &mut db, &s, &p).unwrap_err();
    assert!(matches!(e, Error::InvalidShape { .. }), "{e:?}");
    // Shapes it does not run.
    let padded = ConvShape::nhwc(1, 6, 6, 1).filter(3, 3, 4).padding(Padding::Same).build().unwrap();
    assert!(max_pooled_supports(&padded, &pool_of(&padded)).is_err());
    let p3 = PoolShape::new(1, 4, 4, 4, (3, 3), (1, 1), Padding::Valid).unwrap();
    assert!(max_pooled_supports(&s, &p3).is_err());
    let e = run(case.pooled(), &case.x, &mut dw, &mut db, &s, &p3).unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e:?}");
}

proptest! {
    // 48 cases by default; `PROPTEST_CASES=2000` runs a longer search.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_shapes_match_the_reference(
        n in 1usize..3, k in 1usize..4, extra_h in 1usize..9, extra_w in 1usize..9,
        ci in 1usize..4, co in 1usize..37, relu in any::<bool>(), seed in any::<u32>(),
    ) {
        check(shape(n, k + extra_h, k + extra_w, ci, co, k), relu, seed, &[2]);
    }
}
