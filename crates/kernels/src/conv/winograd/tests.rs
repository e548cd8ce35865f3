//! Winograd against the f64 reference: every variant, pass, SIMD level, tile
//! residue and padding kind, with outputs poisoned with NaN.
//!
//! Tolerance: `|y - ref| <= tol * mag`, where `mag` is `sum(|x| |w|)` over
//! an output's window (the reference run on absolute values), maximised over
//! the outputs of the same Winograd tile (`m x m` pixels starting at
//! multiples of `m`). The bound scales with the magnitude of the sums, not
//! with their (possibly cancelling) values. The tile maximum is needed
//! because Winograd mixes the whole `(m+2)^2` input patch into every output
//! of the tile: an output whose own window lies mostly in the zero padding
//! still carries rounding error from its neighbours' large inputs. The
//! per-variant `tol` is a measured worst case with headroom. Backward-filter
//! uses the same bound with `sum(|x| |dy|)` per weight, maximised over the 9
//! taps of the same channel pair (`G^T dU G` mixes them). Over this sweep
//! (uniform [-1, 1) data; `winograd_error_ratios` prints them) the largest
//! observed ratios were, forward / backward-data / backward-filter:
//! F2 1.9e-7 / 3.1e-7 / 2.6e-7, F4 3.2e-6 / 2.4e-6 / 2.3e-6 (up to 4.5e-6
//! before the separable filter transform); the bounds, 1.5e-6 and 1.5e-5,
//! are 3-6x that.

use super::*;
use crate::conv::{self, reference, ConvPass, ConvShape, Padding};
use crate::simd::SimdLevel;
use convnet_tensor::Rng;

/// Bound on `|y - ref| / sum(|x||w|)` for F(2x2, 3x3).
const TOL_F2: f64 = 1.5e-6;
/// Bound on `|y - ref| / sum(|x||w|)` for F(4x4, 3x3).
const TOL_F4: f64 = 1.5e-5;

fn tol(algo: ConvAlgo) -> f64 {
    if algo == ConvAlgo::WinogradF2 {
        TOL_F2
    } else {
        TOL_F4
    }
}

fn random(len: usize, rng: &mut Rng) -> Vec<f32> {
    (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

fn abs(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.abs()).collect()
}

/// Runs `f` once per SIMD level this CPU has (explicit levels: nothing
/// process-wide changes).
fn for_each_level(f: impl FnMut(SimdLevel)) {
    SimdLevel::available().into_iter().for_each(f);
}

/// Shapes covering h, w = 3..=13 (every residue mod 2 and 4) plus inputs
/// smaller than the window (padded up to it), the channel
/// counts 1, 3, 16, 17, 33, batch 1 and 2, and valid / same / explicit
/// asymmetric padding (including pads > 2, which make backward-data crop).
fn shapes() -> Vec<ConvShape> {
    let channels = [1, 3, 16, 17, 33];
    let mut out = Vec::new();
    for h in 3..=13usize {
        let w = 3 + (h * 7 + 2) % 11;
        for (k, padding) in [
            Padding::Valid,
            Padding::Same,
            Padding::Explicit { top: 0, bottom: 2, left: 1, right: 0 },
            Padding::Explicit { top: 3, bottom: 1, left: 0, right: 4 },
        ]
        .into_iter()
        .enumerate()
        {
            let c_in = channels[(h + k) % 5];
            let c_out = channels[(h * 3 + k + 1) % 5];
            let n = 1 + (h + k) % 2;
            let s = ConvShape::new(n, h, w, c_in, c_out, 3, 3).unwrap().with_padding(padding).unwrap();
            out.push(s);
        }
    }
    // Inputs smaller than the window, made valid by padding alone.
    for (h, w, padding) in [
        (1, 1, Padding::Same),
        (2, 1, Padding::Same),
        (1, 2, Padding::Explicit { top: 2, bottom: 0, left: 0, right: 1 }),
        (2, 2, Padding::Explicit { top: 0, bottom: 5, left: 4, right: 0 }),
    ] {
        let base = ConvShape::new(2, 3, 3, 3, 17, 3, 3).unwrap();
        out.push(ConvShape { h, w, ..base }.with_padding(padding).unwrap());
    }
    out
}

/// Each element of an NHWC `[n, h, w, c]` map replaced by the maximum over
/// its `m x m` tile (rows and columns grouped from 0 in steps of `m`).
fn tile_max(map: &[f32], (h, w, c): (usize, usize, usize), m: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; map.len()];
    for (img, plane) in map.chunks_exact(h * w * c).enumerate() {
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    let (ty, tx) = (y / m * m, x / m * m);
                    let mut best = 0.0f32;
                    for yy in ty..(ty + m).min(h) {
                        for xx in tx..(tx + m).min(w) {
                            best = best.max(plane[(yy * w + xx) * c + ch]);
                        }
                    }
                    out[((img * h + y) * w + x) * c + ch] = best;
                }
            }
        }
    }
    out
}

fn tile_side(algo: ConvAlgo) -> usize {
    if algo == ConvAlgo::WinogradF2 {
        2
    } else {
        4
    }
}

/// Largest `|y - ref| / magnitude` over all outputs; panics on NaN.
fn worst_ratio(got: &[f32], want: &[f32], magnitude: &[f32]) -> f64 {
    let mut worst = 0f64;
    for ((&y, &r), &mag) in got.iter().zip(want).zip(magnitude) {
        assert!(y.is_finite(), "non-finite output {y}");
        let ratio = (y as f64 - r as f64).abs() / (mag as f64).max(f32::MIN_POSITIVE as f64);
        worst = worst.max(ratio);
    }
    worst
}

fn forward_ratio(level: SimdLevel, algo: ConvAlgo, s: &ConvShape, rng: &mut Rng, relu: bool) -> f64 {
    let x = random(s.input_len(), rng);
    let w = random(s.filter_len(), rng);
    let b = random(s.c_out, rng);
    let act = if relu { Activation::Relu } else { Activation::Linear };
    let mut want = vec![0.0; s.output_len()];
    reference::forward(s, &x, &w, Some(&b), &mut want);
    act.apply_inplace(&mut want).unwrap();
    let mut mag = vec![0.0; s.output_len()];
    reference::forward(s, &abs(&x), &abs(&w), Some(&abs(&b)), &mut mag);
    let mag = tile_max(&mag, (s.out_h(), s.out_w(), s.c_out), tile_side(algo));
    let mut got = vec![f32::NAN; s.output_len()];
    conv::conv2d_forward_at(level, algo, s, &x, &w, Some(&b), act, &mut got).unwrap();
    worst_ratio(&got, &want, &mag)
}

fn backward_data_ratio(level: SimdLevel, algo: ConvAlgo, s: &ConvShape, rng: &mut Rng) -> f64 {
    let g = random(s.output_len(), rng);
    let w = random(s.filter_len(), rng);
    let mut want = vec![0.0; s.input_len()];
    reference::backward_data(s, &g, &w, &mut want);
    let mut mag = vec![0.0; s.input_len()];
    reference::backward_data(s, &abs(&g), &abs(&w), &mut mag);
    let mag = tile_max(&mag, (s.h, s.w, s.c_in), tile_side(algo));
    let mut got = vec![f32::NAN; s.input_len()];
    conv::conv2d_backward_data_at(level, algo, s, &g, &w, &mut got).unwrap();
    worst_ratio(&got, &want, &mag)
}

/// Each weight's magnitude replaced by the maximum over the 9 taps of the
/// same `(c_in, c_out)` pair (HWIO `[9][c_in * c_out]`).
fn tap_max(mag: &[f32]) -> Vec<f32> {
    let plane = mag.len() / 9;
    let best: Vec<f32> = (0..plane).map(|i| (0..9).fold(0.0f32, |m, tap| m.max(mag[tap * plane + i]))).collect();
    (0..mag.len()).map(|i| best[i % plane]).collect()
}

/// Backward-filter sums over every tile, so its magnitude is the whole sum
/// `sum(|x| |dy|)` per weight, maximised over the 9 taps of the same channel
/// pair: `G^T dU G` mixes them, so a tap that never touches the image (true
/// gradient exactly 0) still carries rounding error from the others.
fn backward_filter_ratio(level: SimdLevel, algo: ConvAlgo, s: &ConvShape, rng: &mut Rng) -> f64 {
    let x = random(s.input_len(), rng);
    let g = random(s.output_len(), rng);
    let mut want = vec![0.0; s.filter_len()];
    reference::backward_filter(s, &x, &g, &mut want);
    let mut mag = vec![0.0; s.filter_len()];
    reference::backward_filter(s, &abs(&x), &abs(&g), &mut mag);
    let mag = tap_max(&mag);
    let mut got = vec![f32::NAN; s.filter_len()];
    conv::conv2d_backward_filter_at(level, algo, s, &x, &g, &mut got).unwrap();
    worst_ratio(&got, &want, &mag)
}

fn check_backward_filter(algo: ConvAlgo) {
    let mut rng = Rng::new(13);
    for_each_level(|level| {
        for s in shapes() {
            let ratio = backward_filter_ratio(level, algo, &s, &mut rng);
            assert!(
                ratio <= tol(algo),
                "{algo} backward-filter {level:?} {s}: error ratio {ratio:e} > {:e}",
                tol(algo)
            );
        }
    });
}

fn check_forward(algo: ConvAlgo) {
    let mut rng = Rng::new(7);
    for_each_level(|level| {
        for (i, s) in shapes().iter().enumerate() {
            let ratio = forward_ratio(level, algo, s, &mut rng, i % 3 == 1);
            assert!(ratio <= tol(algo), "{algo} forward {level:?} {s}: error ratio {ratio:e} > {:e}", tol(algo));
        }
    });
}

fn check_backward_data(algo: ConvAlgo) {
    let mut rng = Rng::new(11);
    for_each_level(|level| {
        for s in shapes() {
            let ratio = backward_data_ratio(level, algo, &s, &mut rng);
            assert!(ratio <= tol(algo), "{algo} backward-data {level:?} {s}: error ratio {ratio:e} > {:e}", tol(algo));
        }
    });
}

#[test]
fn f2_forward_matches_reference() {
    check_forward(ConvAlgo::WinogradF2);
}

#[test]
fn f4_forward_matches_reference() {
    check_forward(ConvAlgo::WinogradF4);
}

#[test]
fn f2_backward_filter_matches_reference() {
    check_backward_filter(ConvAlgo::WinogradF2);
}

#[test]
fn f4_backward_filter_matches_reference() {
    check_backward_filter(ConvAlgo::WinogradF4);
}

/// Chunks of one tile: `dU` accumulates across many GEMM calls (beta = 1).
#[test]
fn backward_filter_accumulates_across_chunks() {
    let s = ConvShape::new(2, 9, 7, 5, 6, 3, 3).unwrap().with_padding(Padding::Same).unwrap();
    let mut rng = Rng::new(17);
    let x = random(s.input_len(), &mut rng);
    let g = random(s.output_len(), &mut rng);
    let mut want = vec![0.0; s.filter_len()];
    reference::backward_filter(&s, &x, &g, &mut want);
    let mut mag = vec![0.0; s.filter_len()];
    reference::backward_filter(&s, &abs(&x), &abs(&g), &mut mag);
    let mag = tap_max(&mag);
    for algo in [ConvAlgo::WinogradF2, ConvAlgo::WinogradF4] {
        let variant = Variant::of(algo);
        let p = Problem {
            variant,
            n: s.n,
            in_h: s.h,
            in_w: s.w,
            c_in: s.c_in,
            c_out: s.c_out,
            groups: 1,
            pad_top: s.pad_top as isize,
            pad_left: s.pad_left as isize,
            out_h: s.out_h(),
            out_w: s.out_w(),
        };
        let mut got = vec![f32::NAN; s.filter_len()];
        let one_tile = variant.elems() * (s.c_in + s.c_out) * 4;
        for token in Token::every() {
            backward_filter::backward_filter_chunked(&p, token, &x, &g, &mut got, one_tile);
            let ratio = worst_ratio(&got, &want, &mag);
            assert!(ratio <= tol(algo), "{algo} {:?}: {ratio:e}", token.level());
        }
    }
}

#[test]
fn f2_backward_data_matches_reference() {
    check_backward_data(ConvAlgo::WinogradF2);
}

#[test]
fn f4_backward_data_matches_reference() {
    check_backward_data(ConvAlgo::WinogradF4);
}

/// Shapes wide enough for several blocks and several GEMM row tiles and
/// panels (c_out 70 = two full 32-panels and a partial one).
#[test]
fn multi_block_shapes_match_reference() {
    let mut rng = Rng::new(3);
    let shapes = [
        ConvShape::new(3, 17, 19, 40, 70, 3, 3).unwrap().with_padding(Padding::Same).unwrap(),
        ConvShape::new(2, 22, 9, 70, 24, 3, 3).unwrap(),
    ];
    for_each_level(|level| {
        for algo in [ConvAlgo::WinogradF2, ConvAlgo::WinogradF4] {
            for s in &shapes {
                let f = forward_ratio(level, algo, s, &mut rng, false);
                let b = backward_data_ratio(level, algo, s, &mut rng);
                let w = backward_filter_ratio(level, algo, s, &mut rng);
                assert!(f <= tol(algo) && b <= tol(algo), "{algo} {level:?} {s}: forward {f:e}, backward {b:e}");
                assert!(w <= tol(algo), "{algo} {level:?} {s}: backward-filter {w:e}");
            }
        }
    });
}

/// An all-ones image and filter: every output is the count of window taps
/// inside the image, which F2 and F4 must reproduce to rounding.
#[test]
fn ones_count_window_taps() {
    let s = ConvShape::new(1, 5, 6, 1, 1, 3, 3).unwrap().with_padding(Padding::Same).unwrap();
    let mut y = vec![f32::NAN; s.output_len()];
    for algo in [ConvAlgo::WinogradF2, ConvAlgo::WinogradF4] {
        conv::conv2d_forward(algo, &s, &[1.0; 30], &[1.0; 9], None, Activation::Linear, &mut y).unwrap();
        let expect = |i: usize, n: usize| if i == 0 || i == n - 1 { 2.0 } else { 3.0 };
        for oy in 0..5 {
            for ox in 0..6 {
                let e = expect(oy, 5) * expect(ox, 6);
                assert!((y[oy * 6 + ox] - e).abs() < 1e-5, "{algo} ({oy},{ox}): {} vs {e}", y[oy * 6 + ox]);
            }
        }
    }
}

#[test]
fn supports_only_3x3_stride_1_undilated() {
    let ok = ConvShape::new(1, 8, 8, 2, 2, 3, 3).unwrap();
    for algo in [ConvAlgo::WinogradF2, ConvAlgo::WinogradF4] {
        assert!(conv::supports(algo, &ok, ConvPass::Forward).is_ok());
        assert!(conv::supports(algo, &ok, ConvPass::BackwardData).is_ok());
        assert!(conv::supports(algo, &ok, ConvPass::BackwardFilter).is_ok());
        for bad in [
            ConvShape::new(1, 8, 8, 2, 2, 5, 5).unwrap(),
            ConvShape::new(1, 8, 8, 2, 2, 3, 1).unwrap(),
            ok.with_stride(2, 2).unwrap(),
            ok.with_dilation(2, 1).unwrap(),
        ] {
            let err = conv::supports(algo, &bad, ConvPass::Forward).unwrap_err().to_string();
            assert!(err.contains("3x3 window with stride 1"), "{err}");
            let mut y = vec![0.0; bad.output_len()];
            let x = vec![0.0; bad.input_len()];
            let w = vec![0.0; bad.filter_len()];
            assert!(conv::conv2d_forward(algo, &bad, &x, &w, None, Activation::Linear, &mut y).is_err());
        }
    }
}

/// Forward, backward-data and backward-filter are bit-identical on 1, 2 and
/// 3 threads, at every SIMD level (passed explicitly, as in every test).
#[test]
fn results_are_bit_identical_for_any_thread_count() {
    let s = ConvShape::new(2, 21, 18, 24, 20, 3, 3).unwrap().with_padding(Padding::Same).unwrap();
    let mut rng = Rng::new(5);
    let x = random(s.input_len(), &mut rng);
    let w = random(s.filter_len(), &mut rng);
    let g = random(s.output_len(), &mut rng);
    for level in SimdLevel::available() {
        for algo in [ConvAlgo::WinogradF2, ConvAlgo::WinogradF4] {
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| {
                    let mut y = vec![f32::NAN; s.output_len()];
                    forward(Token::new(level).unwrap(), algo, &s, &x, &w, None, Activation::Relu, &mut y);
                    let mut dx = vec![f32::NAN; s.input_len()];
                    backward_data(Token::new(level).unwrap(), algo, &s, &g, &w, &mut dx);
                    let mut dw = vec![f32::NAN; s.filter_len()];
                    backward_filter(Token::new(level).unwrap(), algo, &s, &x, &g, &mut dw);
                    [y, dx, dw].map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>())
                })
            };
            let one = run(1);
            assert!(one[0].iter().all(|&b| f32::from_bits(b).is_finite()), "{algo} {level:?}: non-finite output");
            for threads in [2, 3] {
                let other = run(threads);
                for (pass, (a, b)) in ["forward", "backward-data", "backward-filter"].iter().zip(one.iter().zip(&other))
                {
                    assert!(a == b, "{algo} {level:?} {pass} differs on {threads} threads");
                }
            }
        }
    }
}

/// Scratch buffers are reused across calls of different shapes: a large
/// call, a small one and the large one again give bit-identical results, so
/// no state leaks through the growth-only thread-local buffers.
#[test]
fn scratch_reuse_across_shapes_is_stateless() {
    let big = ConvShape::new(2, 14, 11, 20, 36, 3, 3).unwrap().with_padding(Padding::Same).unwrap();
    let small = ConvShape::new(1, 4, 5, 3, 2, 3, 3).unwrap();
    let mut rng = Rng::new(23);
    let (xb, wb) = (random(big.input_len(), &mut rng), random(big.filter_len(), &mut rng));
    let gb = random(big.output_len(), &mut rng);
    let (xs, ws) = (random(small.input_len(), &mut rng), random(small.filter_len(), &mut rng));
    for level in SimdLevel::available() {
        for algo in [ConvAlgo::WinogradF2, ConvAlgo::WinogradF4] {
            let run_big = || {
                let mut y = vec![f32::NAN; big.output_len()];
                forward(Token::new(level).unwrap(), algo, &big, &xb, &wb, None, Activation::Linear, &mut y);
                let mut dx = vec![f32::NAN; big.input_len()];
                backward_data(Token::new(level).unwrap(), algo, &big, &gb, &wb, &mut dx);
                let mut dw = vec![f32::NAN; big.filter_len()];
                backward_filter(Token::new(level).unwrap(), algo, &big, &xb, &gb, &mut dw);
                [y, dx, dw].map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>())
            };
            let first = run_big();
            let mut ys = vec![f32::NAN; small.output_len()];
            forward(Token::new(level).unwrap(), algo, &small, &xs, &ws, None, Activation::Linear, &mut ys);
            assert!(ys.iter().all(|v| v.is_finite()));
            assert!(first == run_big(), "{algo} {level:?}: results changed after a call with another shape");
        }
    }
}

/// The block partition covers every tile once, respects the byte budget
/// (unless one tile alone exceeds it) and gives small layers several blocks.
#[test]
fn block_partition_is_bounded_and_balanced() {
    for (variant, n, out, c) in [(Variant::F4, 8, 28, 256), (Variant::F2, 64, 11, 32), (Variant::F4, 64, 3, 64)] {
        let p = Problem {
            variant,
            n,
            in_h: out,
            in_w: out,
            c_in: c,
            c_out: c,
            groups: 1,
            pad_top: 1,
            pad_left: 1,
            out_h: out,
            out_w: out,
        };
        let per_block = p.tiles_per_block(c, BLOCK_BYTES, MIN_BLOCKS);
        assert!(per_block >= 1);
        assert!(per_block == 1 || per_block * variant.elems() * 2 * c * 4 <= BLOCK_BYTES);
        assert!(p.tiles().div_ceil(per_block) >= MIN_BLOCKS.min(p.tiles()));
    }
    // Grouped: the smaller budget, whole 12-row micro-kernel tiles for 56x56x128 in 4 groups.
    let grouped = Problem {
        variant: Variant::F4,
        n: 8,
        in_h: 56,
        in_w: 56,
        c_in: 128,
        c_out: 128,
        groups: 4,
        pad_top: 1,
        pad_left: 1,
        out_h: 56,
        out_w: 56,
    };
    assert_eq!(grouped.block_bytes(), GROUPED_BLOCK_BYTES);
    assert_eq!(grouped.tiles_per_block(128, grouped.block_bytes(), MIN_BLOCKS), 10);
}

/// Backward-filter's split: groups cover every tile once, chunks stay within
/// the byte budget (unless one tile alone exceeds it), and the split depends
/// on the problem only: the chapter's conv2d_1 gets several groups to
/// balance two threads, its conv2d_2 (64 tiles) two.
#[test]
fn backward_filter_split_covers_every_tile() {
    use backward_filter::{Split, CHUNK_BYTES};
    for (variant, n, out, c_in, c_out) in [
        (Variant::F4, 64, 11, 32, 64),
        (Variant::F4, 64, 3, 64, 64),
        (Variant::F2, 2, 7, 3, 5),
        (Variant::F4, 1, 1, 1, 1),
    ] {
        let p = Problem {
            variant,
            n,
            in_h: out + 2,
            in_w: out + 2,
            c_in,
            c_out,
            groups: 1,
            pad_top: 0,
            pad_left: 0,
            out_h: out,
            out_w: out,
        };
        let ldd = c_out.next_multiple_of(16);
        let s = Split::of(&p, ldd, CHUNK_BYTES);
        assert!(s.groups >= 1 && s.per_group >= 1 && s.chunk >= 1 && s.chunk <= s.per_group);
        assert!(s.groups * s.per_group >= p.tiles() && (s.groups - 1) * s.per_group < p.tiles());
        assert!(s.chunk == 1 || s.chunk * variant.elems() * (c_in + ldd) * 4 <= CHUNK_BYTES);
        assert_eq!(s, Split::of(&p, ldd, CHUNK_BYTES));
    }
    let conv2d_1 = Problem {
        variant: Variant::F4,
        n: 64,
        in_h: 13,
        in_w: 13,
        c_in: 32,
        c_out: 64,
        groups: 1,
        pad_top: 0,
        pad_left: 0,
        out_h: 11,
        out_w: 11,
    };
    assert!(Split::of(&conv2d_1, 64, CHUNK_BYTES).groups >= 2);
}

/// Backward-filter with several groups of several chunks each (partials
/// summed across groups, accumulated across chunks) matches the reference
/// on every level, and is bit-identical on 1 and 2 threads.
#[test]
fn backward_filter_groups_and_chunks_match_reference() {
    let s = ConvShape::new(9, 9, 10, 17, 33, 3, 3).unwrap().with_padding(Padding::Same).unwrap();
    let mut rng = Rng::new(29);
    let x = random(s.input_len(), &mut rng);
    let g = random(s.output_len(), &mut rng);
    let mut want = vec![0.0; s.filter_len()];
    reference::backward_filter(&s, &x, &g, &mut want);
    let mut mag = vec![0.0; s.filter_len()];
    reference::backward_filter(&s, &abs(&x), &abs(&g), &mut mag);
    let mag = tap_max(&mag);
    for level in SimdLevel::available() {
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let mut dw = vec![f32::NAN; s.filter_len()];
                backward_filter(Token::new(level).unwrap(), ConvAlgo::WinogradF4, &s, &x, &g, &mut dw);
                dw
            })
        };
        let one = run(1);
        let ratio = worst_ratio(&one, &want, &mag);
        assert!(ratio <= TOL_F4, "{level:?}: {ratio:e}");
        let two = run(2);
        assert!(one.iter().zip(&two).all(|(a, b)| a.to_bits() == b.to_bits()), "{level:?}: 1 vs 2 threads");
    }
}

/// Prints the worst error ratios over the test sweep (run with `--ignored --nocapture`).
#[test]
#[ignore = "measurement, not a check"]
fn winograd_error_ratios() {
    let mut rng = Rng::new(1);
    let level = SimdLevel::detect();
    for algo in [ConvAlgo::WinogradF2, ConvAlgo::WinogradF4] {
        let (mut f, mut b, mut w) = (0f64, 0f64, 0f64);
        for s in shapes() {
            f = f.max(forward_ratio(level, algo, &s, &mut rng, false));
            b = b.max(backward_data_ratio(level, algo, &s, &mut rng));
            w = w.max(backward_filter_ratio(level, algo, &s, &mut rng));
        }
        println!("{algo}: forward {f:e}, backward-data {b:e}, backward-filter {w:e}");
    }
}
