//! Helpers shared by the convolution test files: random data, NaN poisoning,
//! the f64 magnitude sums behind the per-algorithm tolerances, the check of
//! every algorithm and pass on one problem under one explicit SIMD level, and
//! the property-test configuration (case count and failure persistence).
//!
//! No test here changes the process-global SIMD level: every call names its
//! level through the `*_at` entry points, so tests run in parallel safely.
#![allow(dead_code)]

use convnet_kernels::activation::Activation;
use convnet_kernels::conv::{self, reference, ConvAlgo, ConvPass, ConvShape};
use convnet_kernels::simd::SimdLevel;
use convnet_tensor::Rng;
use proptest::test_runner::{Config, FileFailurePersistence};

/// A property suite's configuration: `cases` cases unless `PROPTEST_CASES`
/// says otherwise (so `PROPTEST_CASES=2000 cargo test ...` runs a longer
/// search), and shrunk failures persisted beside the test file as
/// `<test>.proptest-regressions`, replayed first on every later run (see
/// `docs/TESTING.md`).
pub fn proptest_config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..Config::default()
    }
}

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

/// Whether `algo` is specified to run `s` (so `supports()` must say Ok for
/// every pass): every algorithm runs all three passes of the shapes it takes.
pub fn must_support(algo: ConvAlgo, s: &ConvShape) -> bool {
    match algo {
        ConvAlgo::Reference | ConvAlgo::Im2col | ConvAlgo::Auto => true,
        ConvAlgo::Direct => s.groups == 1,
        ConvAlgo::Depthwise => s.groups == s.c_in,
        // Grouped shapes too: each group runs on the dense kernel.
        ConvAlgo::WinogradF2 | ConvAlgo::WinogradF4 => {
            (s.kh, s.kw, s.stride_h, s.stride_w, s.dilation_h, s.dilation_w) == (3, 3, 1, 1, 1, 1)
        }
    }
}

/// Asserts `supports()` accepts what it must; returns whether the algorithm
/// runs the pass.
pub fn runs(algo: ConvAlgo, s: &ConvShape, pass: ConvPass) -> bool {
    let verdict = conv::supports(algo, s, pass);
    if must_support(algo, s) {
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

/// Runs every pass of `algo` on `p` under `level` and checks it against `o`;
/// outputs are poisoned with NaN before every call. Returns how many passes
/// ran.
pub fn check_algo(level: SimdLevel, algo: ConvAlgo, p: &Problem, o: &Oracle, ctx: &str, worst: &mut Worst) -> usize {
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
            conv::conv2d_forward_at(level, algo, s, &p.x, &p.w, bias, act, &mut y)
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
        conv::conv2d_backward_data_at(level, algo, s, &p.gy, &p.w, &mut gx)
            .unwrap_or_else(|e| panic!("{algo} backward_data {ctx}: {e}"));
        let ratio = compare(&format!("{algo} backward_data {s} {ctx}"), &gx, &o.gx, &gx_mag, tol);
        worst.note(algo, "backward_data", ratio);
        ran += 1;
    }
    if runs(algo, s, ConvPass::BackwardFilter) {
        let mut gw = poisoned(s.filter_len());
        conv::conv2d_backward_filter_at(level, algo, s, &p.x, &p.gy, &mut gw)
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

/// Checks every algorithm (and `Auto`) on `p` under every SIMD level this
/// CPU runs, against the reference results `o`.
pub fn check_every_algo_and_level(p: &Problem, o: &Oracle, ctx: &str, worst: &mut Worst) {
    for level in SimdLevel::available() {
        let ctx = format!("simd {} {ctx}", level.name());
        for algo in ConvAlgo::ALL.into_iter().chain([ConvAlgo::Auto]) {
            check_algo(level, algo, p, o, &ctx, worst);
        }
    }
}
