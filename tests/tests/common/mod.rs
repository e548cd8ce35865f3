//! Helpers shared by the convolution test files: random data, NaN poisoning,
//! the f64 magnitude sums behind the per-algorithm tolerances, and the lock
//! that serialises `simd::force` (process-global) between tests.
#![allow(dead_code)]

use convnet_kernels::activation::Activation;
use convnet_kernels::conv::{self, reference, ConvAlgo, ConvPass, ConvShape};
use convnet_tensor::Rng;
use std::sync::{Mutex, MutexGuard};

/// `simd::force` changes the level for the whole process: every test that
/// forces levels holds this lock for its whole loop over levels.
static LEVELS: Mutex<()> = Mutex::new(());

/// Takes the SIMD-level lock (a poisoned lock is still a lock).
pub fn lock_levels() -> MutexGuard<'static, ()> {
    LEVELS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Algorithms whose authors have landed them (`git log`): for these,
/// `supports()` must accept every shape it is specified to run. An algorithm
/// not listed is still checked for agreement wherever `supports()` is `Ok`.
pub const CLAIMED: &[ConvAlgo] = &[
    ConvAlgo::Reference,
    ConvAlgo::Im2col,
    ConvAlgo::Direct,
    ConvAlgo::WinogradF2,
    ConvAlgo::WinogradF4,
    ConvAlgo::Depthwise,
];

/// Relative tolerance per algorithm: `|y - y_ref| <= tol * sum |a||b|` over
/// the terms of each output element, maximised over the [`radius`]
/// neighbourhood for Winograd (see "Tolerances in the property suite"
/// in `docs/ALGORITHMS.md`).
pub fn tolerance(algo: ConvAlgo) -> f64 {
    match algo {
        ConvAlgo::Reference => 1e-7,
        ConvAlgo::Direct | ConvAlgo::Im2col | ConvAlgo::Depthwise => 2e-6,
        ConvAlgo::WinogradF2 => 4e-6,
        ConvAlgo::WinogradF4 | ConvAlgo::Auto => 4e-5,
    }
}

/// Spatial radius of the neighbourhood whose magnitudes bound an algorithm's
/// error: 0 for algorithms that sum each element's own terms; for Winograd
/// F(m x m, 3x3), whose transforms mix a whole (m+2)x(m+2) tile, a radius
/// that covers every tile touching the element (`m + 1`).
pub fn radius(algo: ConvAlgo) -> usize {
    match algo {
        ConvAlgo::WinogradF2 => 3,
        ConvAlgo::WinogradF4 | ConvAlgo::Auto => 5,
        _ => 0,
    }
}

/// For an NHWC `[n, h, w, c]` tensor of magnitudes, the maximum over the
/// `(2r+1)^2` neighbourhood of each element (same image, same channel).
pub fn spread(mag: &[f32], (n, h, w, c): (usize, usize, usize, usize), r: usize) -> Vec<f32> {
    if r == 0 {
        return mag.to_vec();
    }
    let mut out = vec![0.0f32; mag.len()];
    for b in 0..n {
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    let mut m = 0.0f32;
                    for yy in y.saturating_sub(r)..(y + r + 1).min(h) {
                        for xx in x.saturating_sub(r)..(x + r + 1).min(w) {
                            m = m.max(mag[((b * h + yy) * w + xx) * c + ch]);
                        }
                    }
                    out[((b * h + y) * w + x) * c + ch] = m;
                }
            }
        }
    }
    out
}

/// Whether `algo` is specified to run `pass` on `s` (so `supports()` must say
/// Ok). Every algorithm runs all three passes of the shapes it takes.
pub fn must_support(algo: ConvAlgo, s: &ConvShape, _pass: ConvPass) -> bool {
    match algo {
        ConvAlgo::Reference | ConvAlgo::Im2col | ConvAlgo::Auto => true,
        ConvAlgo::Direct => s.groups == 1,
        ConvAlgo::Depthwise => s.groups == s.c_in,
        ConvAlgo::WinogradF2 | ConvAlgo::WinogradF4 => {
            s.groups == 1 && (s.kh, s.kw, s.stride_h, s.stride_w, s.dilation_h, s.dilation_w) == (3, 3, 1, 1, 1, 1)
        }
    }
}

/// Asserts `supports()` accepts what it must, for claimed algorithms; returns
/// whether the algorithm runs the pass.
pub fn runs(algo: ConvAlgo, s: &ConvShape, pass: ConvPass) -> bool {
    let verdict = conv::supports(algo, s, pass);
    if CLAIMED.contains(&algo) && must_support(algo, s, pass) {
        assert!(verdict.is_ok(), "{algo} must run {} on {s}: {:?}", pass.name(), verdict);
    }
    verdict.is_ok()
}

/// `len` values uniform in `[-1, 1)`.
pub fn uniform(len: usize, rng: &mut Rng) -> Vec<f32> {
    (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

/// Absolute values.
pub fn abs(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.abs()).collect()
}

/// A buffer of NaN, so an element a kernel forgets to write shows up.
pub fn poisoned(len: usize) -> Vec<f32> {
    vec![f32::NAN; len]
}

/// Bit patterns, for exact comparisons that treat NaN like any value.
pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// One random problem: input, filter, bias and output gradient.
pub struct Problem {
    /// The shape.
    pub s: ConvShape,
    /// NHWC input.
    pub x: Vec<f32>,
    /// HWIO filter.
    pub w: Vec<f32>,
    /// Bias.
    pub b: Vec<f32>,
    /// NHWC output gradient.
    pub gy: Vec<f32>,
}

impl Problem {
    /// Uniform data from `seed`.
    pub fn new(s: ConvShape, seed: u64) -> Problem {
        let mut rng = Rng::new(seed);
        let x = uniform(s.input_len(), &mut rng);
        let w = uniform(s.filter_len(), &mut rng);
        let b = uniform(s.c_out, &mut rng);
        let gy = uniform(s.output_len(), &mut rng);
        Problem { s, x, w, b, gy }
    }
}

/// The reference results of a problem and, for each element, the f64
/// magnitude `sum |a||b|` of the terms it sums (the reference run on
/// absolute values), which scales every tolerance.
pub struct Oracle {
    /// Forward without bias.
    pub y: Vec<f32>,
    /// Forward with bias.
    pub y_bias: Vec<f32>,
    /// Magnitudes of the forward sums (bias included).
    pub y_mag: Vec<f32>,
    /// Backward-data.
    pub gx: Vec<f32>,
    /// Magnitudes of the backward-data sums.
    pub gx_mag: Vec<f32>,
    /// Backward-filter.
    pub gw: Vec<f32>,
    /// Magnitudes of the backward-filter sums.
    pub gw_mag: Vec<f32>,
}

impl Oracle {
    /// Runs the f64 reference on `p`.
    pub fn new(p: &Problem) -> Oracle {
        let s = &p.s;
        let mut y = poisoned(s.output_len());
        reference::forward(s, &p.x, &p.w, None, &mut y);
        let mut y_bias = poisoned(s.output_len());
        reference::forward(s, &p.x, &p.w, Some(&p.b), &mut y_bias);
        let mut y_mag = poisoned(s.output_len());
        reference::forward(s, &abs(&p.x), &abs(&p.w), Some(&abs(&p.b)), &mut y_mag);
        let mut gx = poisoned(s.input_len());
        reference::backward_data(s, &p.gy, &p.w, &mut gx);
        let mut gx_mag = poisoned(s.input_len());
        reference::backward_data(s, &abs(&p.gy), &abs(&p.w), &mut gx_mag);
        let mut gw = poisoned(s.filter_len());
        reference::backward_filter(s, &p.x, &p.gy, &mut gw);
        let mut gw_mag = poisoned(s.filter_len());
        reference::backward_filter(s, &abs(&p.x), &abs(&p.gy), &mut gw_mag);
        Oracle { y, y_bias, y_mag, gx, gx_mag, gw, gw_mag }
    }
}

/// The largest `|got - want| / mag` (0 where both are 0); panics with the
/// first element that breaks `|got - want| <= tol * mag`, or any NaN.
pub fn compare(what: &str, got: &[f32], want: &[f32], mag: &[f32], tol: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = 0.0f64;
    for (i, ((&g, &r), &m)) in got.iter().zip(want).zip(mag).enumerate() {
        let err = (g as f64 - r as f64).abs();
        // The magnitude is itself rounded to f32; a floor of the smallest
        // normal keeps an all-zero window's bound from being exactly 0.
        let bound = tol * (m as f64).max(f32::MIN_POSITIVE as f64);
        assert!(err <= bound, "{what}[{i}]: got {g}, reference {r}, |diff| {err:e} > {tol:e} * {m:e}");
        if m > 0.0 {
            worst = worst.max(err / m as f64);
        }
    }
    worst
}

/// Worst error ratio seen per algorithm and pass, for the docs.
#[derive(Default)]
pub struct Worst(pub std::collections::BTreeMap<(String, &'static str), f64>);

impl Worst {
    /// Records a ratio.
    pub fn note(&mut self, algo: ConvAlgo, pass: &'static str, ratio: f64) {
        let e = self.0.entry((algo.name().to_string(), pass)).or_insert(0.0);
        *e = e.max(ratio);
    }
}

/// Runs every pass of `algo` on `p` (under the current SIMD level) and checks
/// it against `o`; outputs are poisoned with NaN before every call. Returns
/// how many passes ran.
pub fn check_algo(algo: ConvAlgo, p: &Problem, o: &Oracle, ctx: &str, worst: &mut Worst) -> usize {
    let s = &p.s;
    let tol = tolerance(algo);
    let r = radius(algo);
    let mut ran = 0;
    if runs(algo, s, ConvPass::Forward) {
        let y_mag = spread(&o.y_mag, (s.n, s.out_h(), s.out_w(), s.c_out), r);
        let relu = |v: &[f32]| v.iter().map(|&x| x.max(0.0)).collect::<Vec<f32>>();
        type Case<'a> = (Option<&'a [f32]>, Activation, Vec<f32>, &'static str);
        let cases: [Case; 3] = [
            (None, Activation::Linear, o.y.clone(), "forward"),
            (Some(&p.b), Activation::Linear, o.y_bias.clone(), "forward+bias"),
            (Some(&p.b), Activation::Relu, relu(&o.y_bias), "forward+bias+relu"),
        ];
        for (bias, act, want, name) in cases {
            let mut y = poisoned(s.output_len());
            conv::conv2d_forward(algo, s, &p.x, &p.w, bias, act, &mut y)
                .unwrap_or_else(|e| panic!("{algo} {name} {ctx}: {e}"));
            // relu is 1-Lipschitz, so the linear bound holds after it too.
            let ratio = compare(&format!("{algo} {name} {s} {ctx}"), &y, &want, &y_mag, tol);
            worst.note(algo, "forward", ratio);
        }
        ran += 1;
    }
    if runs(algo, s, ConvPass::BackwardData) {
        let gx_mag = spread(&o.gx_mag, (s.n, s.h, s.w, s.c_in), r);
        let mut gx = poisoned(s.input_len());
        conv::conv2d_backward_data(algo, s, &p.gy, &p.w, &mut gx)
            .unwrap_or_else(|e| panic!("{algo} backward_data {ctx}: {e}"));
        let ratio = compare(&format!("{algo} backward_data {s} {ctx}"), &gx, &o.gx, &gx_mag, tol);
        worst.note(algo, "backward_data", ratio);
        ran += 1;
    }
    if runs(algo, s, ConvPass::BackwardFilter) {
        let mut gw = poisoned(s.filter_len());
        conv::conv2d_backward_filter(algo, s, &p.x, &p.gy, &mut gw)
            .unwrap_or_else(|e| panic!("{algo} backward_filter {ctx}: {e}"));
        // Winograd's filter-side transform mixes the 3x3 taps of each
        // (c_in, c_out) pair: maximise the magnitude over them (HWIO viewed as
        // a 1 x kh x kw x (c_in/groups*c_out) image).
        let gw_mag = spread(&o.gw_mag, (1, s.kh, s.kw, s.c_in_per_group() * s.c_out), r.min(s.kh.max(s.kw)));
        let ratio = compare(&format!("{algo} backward_filter {s} {ctx}"), &gw, &o.gw, &gw_mag, tol);
        worst.note(algo, "backward_filter", ratio);
        ran += 1;
    }
    ran
}
