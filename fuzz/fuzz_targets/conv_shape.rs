//! Fuzz target over `ConvShape`: decodes the input bytes into a small
//! convolution problem (dimensions capped so tensors stay tiny, zero and
//! oversized windows allowed so invalid shapes occur too), then:
//!
//! - invalid shape: `validate()` and every entry point of every algorithm
//!   must return `Err` (never panic);
//! - valid shape: every algorithm whose `supports()` is `Ok` runs forward,
//!   backward-data and backward-filter on small pseudo-random data (outputs
//!   poisoned with NaN first) and must agree with `Reference` within the
//!   magnitude-scaled tolerance of the property suite; an algorithm that
//!   refuses the shape must return `Err(Unsupported)` naming the shape.
#![no_main]

use convnet_kernels::activation::Activation;
use convnet_kernels::conv::{self, reference, ConvAlgo, ConvPass, ConvShape, Padding};
use convnet_kernels::Error;
use libfuzzer_sys::fuzz_target;

/// Relative tolerance per algorithm (as in `crates/kernels/tests/common/mod.rs`).
fn tolerance(algo: ConvAlgo) -> f64 {
    match algo {
        ConvAlgo::Reference => 1e-7,
        ConvAlgo::Direct | ConvAlgo::Im2col => 1e-5,
        ConvAlgo::WinogradF2 => 1e-4,
        _ => 1e-3,
    }
}

/// Neighbourhood radius whose magnitudes bound the error (Winograd mixes a
/// whole tile; as `radius` in `crates/kernels/tests/common/mod.rs`).
fn radius(algo: ConvAlgo) -> usize {
    match algo {
        ConvAlgo::WinogradF2 => 3,
        ConvAlgo::WinogradF4 | ConvAlgo::Auto => 5,
        _ => 0,
    }
}

/// Max of `mag` (NHWC `[n, h, w, c]`) over each element's `(2r+1)^2` neighbourhood.
fn spread(mag: &[f32], (n, h, w, c): (usize, usize, usize, usize), r: usize) -> Vec<f32> {
    let mut out = mag.to_vec();
    if r == 0 {
        return out;
    }
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

/// Reads bytes one at a time, zeros when they run out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn next(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    /// A value in `0..=max`.
    fn upto(&mut self, max: u8) -> usize {
        (self.next() % (max + 1)) as usize
    }
}

/// A small deterministic generator for the tensor data.
struct Lcg(u64);

impl Lcg {
    fn fill(&mut self, len: usize) -> Vec<f32> {
        (0..len)
            .map(|_| {
                self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }
}

fn decode(b: &mut Bytes) -> Result<ConvShape, Error> {
    let mut s = ConvShape {
        n: b.upto(3),
        h: b.upto(12),
        w: b.upto(12),
        c_in: b.upto(9),
        c_out: b.upto(9),
        kh: b.upto(6),
        kw: b.upto(6),
        stride_h: b.upto(3),
        stride_w: b.upto(3),
        dilation_h: b.upto(2),
        dilation_w: b.upto(2),
        pad_top: 0,
        pad_bottom: 0,
        pad_left: 0,
        pad_right: 0,
        groups: 1,
    };
    match b.upto(3) {
        0 => Ok(s),
        1 => s.with_padding(Padding::Same),
        _ => {
            (s.pad_top, s.pad_bottom, s.pad_left, s.pad_right) = (b.upto(4), b.upto(4), b.upto(4), b.upto(4));
            Ok(s)
        }
    }
}

/// `|got - want| <= tol * mag` element-wise (no NaN passes).
fn check(what: &str, s: &ConvShape, got: &[f32], want: &[f32], mag: &[f32], tol: f64) {
    for (i, ((&g, &r), &m)) in got.iter().zip(want).zip(mag).enumerate() {
        let err = (g as f64 - r as f64).abs();
        assert!(err <= tol * (m as f64).max(f32::MIN_POSITIVE as f64), "{what} on {s}: [{i}] {g} vs {r} (mag {m})");
    }
}

fn abs(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.abs()).collect()
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = Bytes(data);
    let decoded = decode(&mut bytes);
    let seed = u64::from(bytes.next()) | u64::from(bytes.next()) << 8;
    let s = match decoded {
        Ok(s) => s,
        Err(e) => {
            assert!(matches!(e, Error::InvalidShape { .. }), "{e}");
            return;
        }
    };
    let algos = ConvAlgo::ALL.into_iter().chain([ConvAlgo::Auto]);
    if s.validate().is_err() {
        // Invalid: every entry point errs, with buffers of any length.
        let v = vec![0.0f32; 64];
        let mut o = vec![0.0f32; 64];
        for algo in algos {
            assert!(conv::conv2d_forward(algo, &s, &v, &v, None, Activation::Relu, &mut o).is_err());
            assert!(conv::conv2d_backward_data(algo, &s, &v, &v, &mut o).is_err());
            assert!(conv::conv2d_backward_filter(algo, &s, &v, &v, &mut o).is_err());
        }
        assert!(conv::conv2d_backward_bias(&s, &v, &mut o).is_err());
        return;
    }
    let mut rng = Lcg(seed);
    let (x, w, bias, gy) = (rng.fill(s.input_len()), rng.fill(s.filter_len()), rng.fill(s.c_out), rng.fill(s.output_len()));
    let mut y_ref = vec![f32::NAN; s.output_len()];
    reference::forward(&s, &x, &w, Some(&bias), &mut y_ref);
    y_ref.iter_mut().for_each(|v| *v = v.max(0.0));
    let mut y_mag = vec![f32::NAN; s.output_len()];
    reference::forward(&s, &abs(&x), &abs(&w), Some(&abs(&bias)), &mut y_mag);
    let mut gx_ref = vec![f32::NAN; s.input_len()];
    reference::backward_data(&s, &gy, &w, &mut gx_ref);
    let mut gx_mag = vec![f32::NAN; s.input_len()];
    reference::backward_data(&s, &abs(&gy), &abs(&w), &mut gx_mag);
    let mut gw_ref = vec![f32::NAN; s.filter_len()];
    reference::backward_filter(&s, &x, &gy, &mut gw_ref);
    let mut gw_mag = vec![f32::NAN; s.filter_len()];
    reference::backward_filter(&s, &abs(&x), &abs(&gy), &mut gw_mag);

    for algo in algos {
        let tol = tolerance(algo);
        let y_mag = spread(&y_mag, (s.n, s.out_h(), s.out_w(), s.c_out), radius(algo));
        let gx_mag = spread(&gx_mag, (s.n, s.h, s.w, s.c_in), radius(algo));
        let gw_mag = spread(&gw_mag, (1, s.kh, s.kw, s.c_in * s.c_out), radius(algo).min(s.kh.max(s.kw)));
        for pass in [ConvPass::Forward, ConvPass::BackwardData, ConvPass::BackwardFilter] {
            let result = match pass {
                ConvPass::Forward => {
                    let mut y = vec![f32::NAN; s.output_len()];
                    conv::conv2d_forward(algo, &s, &x, &w, Some(&bias), Activation::Relu, &mut y)
                        .map(|()| check(&format!("{algo} forward"), &s, &y, &y_ref, &y_mag, tol))
                }
                ConvPass::BackwardData => {
                    let mut gx = vec![f32::NAN; s.input_len()];
                    conv::conv2d_backward_data(algo, &s, &gy, &w, &mut gx)
                        .map(|()| check(&format!("{algo} backward_data"), &s, &gx, &gx_ref, &gx_mag, tol))
                }
                ConvPass::BackwardFilter => {
                    let mut gw = vec![f32::NAN; s.filter_len()];
                    conv::conv2d_backward_filter(algo, &s, &x, &gy, &mut gw)
                        .map(|()| check(&format!("{algo} backward_filter"), &s, &gw, &gw_ref, &gw_mag, tol))
                }
            };
            match (conv::supports(algo, &s, pass), result) {
                (Ok(()), Ok(())) => {}
                (Err(_), Err(Error::Unsupported { shape, .. })) => assert_eq!(shape, s.to_string()),
                (verdict, result) => panic!("{algo} {} on {s}: supports {verdict:?} but ran {result:?}", pass.name()),
            }
        }
    }
});
