//! Grouped convolution on Winograd.
//!
//! Why: a grouped layer such as ResNeXt's 56x56x128 with 4 groups does as
//! many multiply-adds as a dense 64->64 layer, and Winograd F(4x4, 3x3)
//! does a quarter of them; one im2col GEMM per group (see
//! [`super::grouped`]) cannot come near that.
//!
//! Group `g` of `groups`: input channels `g*cig .. (g+1)*cig`, output
//! channels `g*cog .. (g+1)*cog`, filter columns `g*cog ..` of the grouped
//! HWIO filter `[kh, kw, cig, c_out]` (whose rows are exactly the dense
//! group filter's rows).
//!
//! **Forward and backward-data** run all groups in one pass of the dense
//! Winograd block driver (see [`super::winograd`]): per block of tiles the
//! input transform covers all `c_in` channels at once (no per-group copy of
//! the input, one pass over it), then per tile element one GEMM per group
//! reads its `cig` channels of the transformed tiles and writes its columns
//! of the products (the block-diagonal GEMM), and the output transform
//! covers all `c_out` channels. Each output is the same chain of operations
//! as the dense Winograd result of its group; the partition into blocks is
//! fixed, so results are bit-identical for any thread count.
//!
//! **Backward-filter** gathers each group's channels into a dense NHWC
//! tensor, runs the dense Winograd backward-filter on it and scatters the
//! group's filter gradient back (groups one after another, each pass
//! parallel inside; as deterministic as the dense one). Buffers: three
//! growth-only thread-local scratch slots of the calling thread (`Column`
//! for the gathered input, `Partial` for the gathered output gradient,
//! `Table` for the group's filter gradient); the dense kernel uses other
//! slots, so the steady state allocates nothing.

use super::{winograd, ConvAlgo, ConvShape};
use crate::activation::Activation;
use crate::arch::{scratch_f32, FtzGuard, Slot, Token};
use rayon::prelude::*;

/// Pixels per parallel chunk of a gather or scatter: 1024 pixels of 32
/// channels are 128 KiB, enough to amortise a rayon task.
const COPY_CHUNK_PIXELS: usize = 1024;

/// The dense shape one group runs: `c_in / groups -> c_out / groups`,
/// every other field as `s`.
pub(crate) fn group_shape(s: &ConvShape) -> ConvShape {
    ConvShape { c_in: s.c_in_per_group(), c_out: s.c_out_per_group(), groups: 1, ..*s }
}

/// Whether the grouped Winograd path runs `s`: its group's dense shape
/// must be one Winograd runs.
pub(crate) fn supports(s: &ConvShape) -> Result<(), String> {
    winograd::supports(&group_shape(s))
}

/// `dst[p, ..] = src[p, c0 .. c0 + cn]` for every pixel `p` of `src` (`c`
/// channels per pixel); `dst` holds `cn` channels per pixel.
fn gather(src: &[f32], c: usize, (c0, cn): (usize, usize), dst: &mut [f32]) {
    dst.par_chunks_mut(COPY_CHUNK_PIXELS * cn).zip(src.par_chunks(COPY_CHUNK_PIXELS * c)).for_each(|(d, s)| {
        for (d, s) in d.chunks_exact_mut(cn).zip(s.chunks_exact(c)) {
            d.copy_from_slice(&s[c0..c0 + cn]);
        }
    });
}

/// `dst[p, c0 .. c0 + cn] = src[p, ..]`: the inverse of [`gather`].
fn scatter(src: &[f32], (c0, cn): (usize, usize), dst: &mut [f32], c: usize) {
    dst.par_chunks_mut(COPY_CHUNK_PIXELS * c).zip(src.par_chunks(COPY_CHUNK_PIXELS * cn)).for_each(|(d, s)| {
        for (d, s) in d.chunks_exact_mut(c).zip(s.chunks_exact(cn)) {
            d[c0..c0 + cn].copy_from_slice(s);
        }
    });
}

/// Forward pass (lengths checked, `supports(s)` holds): every group in one
/// pass of the Winograd block driver (see the module docs).
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    token: Token,
    algo: ConvAlgo,
    s: &ConvShape,
    input: &[f32],
    filter: &[f32],
    bias: Option<&[f32]>,
    activation: Activation,
    output: &mut [f32],
) {
    winograd::forward(token, algo, s, input, filter, bias, activation, output);
}

/// Backward-data pass (overwrites `grad_input`; lengths checked, `supports(s)`
/// holds): every group in one pass of the Winograd block driver.
pub(crate) fn backward_data(
    token: Token,
    algo: ConvAlgo,
    s: &ConvShape,
    grad_output: &[f32],
    filter: &[f32],
    grad_input: &mut [f32],
) {
    winograd::backward_data(token, algo, s, grad_output, filter, grad_input);
}

/// Backward-filter pass (overwrites `grad_filter`; lengths checked, `supports(s)` holds).
pub(crate) fn backward_filter(
    token: Token,
    algo: ConvAlgo,
    s: &ConvShape,
    input: &[f32],
    grad_output: &[f32],
    grad_filter: &mut [f32],
) {
    let _ftz = FtzGuard::new();
    let d = group_shape(s);
    let (cig, cog) = (d.c_in, d.c_out);
    let mut x = scratch_f32(Slot::Column, d.input_len());
    let mut dy = scratch_f32(Slot::Partial, d.output_len());
    let mut dw = scratch_f32(Slot::Table, d.filter_len());
    for g in 0..s.groups {
        gather(input, s.c_in, (g * cig, cig), &mut x);
        gather(grad_output, s.c_out, (g * cog, cog), &mut dy);
        winograd::backward_filter(token, algo, &d, &x, &dy, &mut dw);
        scatter(&dw, (g * cog, cog), grad_filter, s.c_out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::{reference, Padding};

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len).map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0).collect()
    }

    fn close(what: &str, s: &ConvShape, a: &[f32], b: &[f32], scale: f32) {
        for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-4 * scale, "{what} {s} element {i}: {x} vs {y}");
        }
    }

    fn grouped(n: usize, hw: (usize, usize), (ci, co): (usize, usize), groups: usize, pad: Padding) -> ConvShape {
        ConvShape::new(n, hw.0, hw.1, ci, co, 3, 3).unwrap().with_groups(groups).unwrap().with_padding(pad).unwrap()
    }

    /// Besides small groups: group channel counts on and off the vector
    /// widths (16 / 8 lanes) and the GEMM panel widths (33 and 40 output
    /// channels per group pad the last 32- or 16-wide panel, so `M`'s group
    /// columns are not `cog` apart), one channel per group, a cropping
    /// padding, and enough tiles for several blocks of the block-diagonal
    /// driver (forward, backward-data).
    #[test]
    fn every_pass_matches_reference_on_both_variants() {
        let crop = Padding::Explicit { top: 3, bottom: 0, left: 0, right: 3 };
        let shapes = [
            grouped(2, (9, 7), (8, 12), 4, Padding::Same),
            grouped(1, (10, 11), (6, 4), 2, Padding::Valid),
            grouped(2, (6, 6), (9, 3), 3, Padding::Explicit { top: 2, bottom: 0, left: 1, right: 2 }),
            grouped(1, (7, 9), (34, 66), 2, Padding::Same),
            grouped(2, (5, 6), (3, 6), 3, Padding::Valid),
            grouped(1, (6, 5), (4, 4), 4, Padding::Same),
            grouped(1, (9, 8), (48, 120), 3, crop),
            grouped(3, (14, 14), (32, 64), 2, Padding::Same),
        ];
        for token in Token::every() {
            for algo in [ConvAlgo::WinogradF2, ConvAlgo::WinogradF4] {
                for s in shapes {
                    let (x, w, bias, dy) =
                        (data(s.input_len(), 1), data(s.filter_len(), 2), data(s.c_out, 3), data(s.output_len(), 4));
                    let scale = (9 * s.c_in_per_group().max(s.c_out_per_group())) as f32;
                    let mut want = vec![0.0; s.output_len()];
                    reference::forward(&s, &x, &w, Some(&bias), &mut want);
                    want.iter_mut().for_each(|v| *v = v.max(0.0));
                    let mut got = vec![f32::NAN; s.output_len()];
                    forward(token, algo, &s, &x, &w, Some(&bias), Activation::Relu, &mut got);
                    close(&format!("{algo} {token:?} forward"), &s, &got, &want, scale);

                    let mut want = vec![0.0; s.input_len()];
                    reference::backward_data(&s, &dy, &w, &mut want);
                    let mut got = vec![f32::NAN; s.input_len()];
                    backward_data(token, algo, &s, &dy, &w, &mut got);
                    close(&format!("{algo} {token:?} backward_data"), &s, &got, &want, scale);

                    let mut want = vec![0.0; s.filter_len()];
                    reference::backward_filter(&s, &x, &dy, &mut want);
                    let mut got = vec![f32::NAN; s.filter_len()];
                    backward_filter(token, algo, &s, &x, &dy, &mut got);
                    close(
                        &format!("{algo} {token:?} backward_filter"),
                        &s,
                        &got,
                        &want,
                        (s.n * s.out_h() * s.out_w()) as f32,
                    );
                }
            }
        }
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Forward and backward-data give the same bits on 1, 2 and 3 threads
    /// (the blocks are a fixed partition of the tiles).
    #[test]
    fn bit_identical_for_any_thread_count() {
        let s = grouped(3, (23, 21), (64, 96), 4, Padding::Same);
        let (x, w, bias, dy) =
            (data(s.input_len(), 1), data(s.filter_len(), 2), data(s.c_out, 3), data(s.output_len(), 4));
        for token in Token::every() {
            for algo in [ConvAlgo::WinogradF2, ConvAlgo::WinogradF4] {
                let run = |threads: usize| {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                    pool.install(|| {
                        let mut y = vec![f32::NAN; s.output_len()];
                        forward(token, algo, &s, &x, &w, Some(&bias), Activation::Linear, &mut y);
                        let mut dx = vec![f32::NAN; s.input_len()];
                        backward_data(token, algo, &s, &dy, &w, &mut dx);
                        (bits(&y), bits(&dx))
                    })
                };
                let one = run(1);
                assert!(one == run(2) && one == run(3), "{algo} {token:?}: results depend on the thread count");
            }
        }
    }

    /// `dense(g, x_g, w_g, y_g)` on each group's channels alone: group `g`'s
    /// `src_g` of `src`'s `src_c` channels per pixel gathered into `x_g`, its
    /// filter columns into `w_g`, and `y_g` (`dst_g` channels per pixel)
    /// scattered into `dst_c` channels per pixel of the result.
    fn per_group(
        s: &ConvShape,
        (src, src_c, src_g): (&[f32], usize, usize),
        (dst_c, dst_g): (usize, usize),
        w: &[f32],
        dense: impl Fn(usize, &[f32], &[f32], &mut [f32]),
    ) -> Vec<f32> {
        let pixels = src.len() / src_c;
        let d = group_shape(s);
        let dst_pixels = if src_c == s.c_in { s.n * s.out_h() * s.out_w() } else { s.n * s.h * s.w };
        let mut out = vec![f32::NAN; dst_pixels * dst_c];
        for g in 0..s.groups {
            let (mut xg, mut wg, mut yg) =
                (vec![0.0; pixels * src_g], vec![0.0; d.filter_len()], vec![0.0; dst_pixels * dst_g]);
            gather(src, src_c, (g * src_g, src_g), &mut xg);
            gather(w, s.c_out, (g * d.c_out, d.c_out), &mut wg);
            dense(g, &xg, &wg, &mut yg);
            scatter(&yg, (g * dst_g, dst_g), &mut out, dst_c);
        }
        out
    }

    /// Where every group's channel counts are whole vectors on every level
    /// (multiples of 16), each group's outputs are bit for bit the dense
    /// Winograd pass run on that group's channels alone: the block-diagonal
    /// driver computes the same chain of operations per output, including
    /// the padded panels of 40 channels per group.
    #[test]
    fn same_bits_as_each_group_run_dense() {
        let fwd = grouped(2, (11, 10), (32, 80), 2, Padding::Same);
        let bwd = grouped(2, (9, 13), (64, 32), 2, Padding::Valid);
        for token in Token::every() {
            for algo in [ConvAlgo::WinogradF2, ConvAlgo::WinogradF4] {
                let s = fwd;
                let (x, w, bias) = (data(s.input_len(), 1), data(s.filter_len(), 2), data(s.c_out, 3));
                let mut got = vec![f32::NAN; s.output_len()];
                forward(token, algo, &s, &x, &w, Some(&bias), Activation::Relu, &mut got);
                let (d, act) = (group_shape(&s), Activation::Relu);
                let want = per_group(&s, (&x, s.c_in, d.c_in), (s.c_out, d.c_out), &w, |g, xg, wg, yg| {
                    let b = &bias[g * d.c_out..][..d.c_out];
                    winograd::forward(token, algo, &d, xg, wg, Some(b), act, yg);
                });
                assert!(bits(&got) == bits(&want), "{algo} {token:?}: forward differs from the per-group dense pass");

                let s = bwd;
                let (w, dy) = (data(s.filter_len(), 2), data(s.output_len(), 4));
                let mut got = vec![f32::NAN; s.input_len()];
                backward_data(token, algo, &s, &dy, &w, &mut got);
                let d = group_shape(&s);
                let want = per_group(&s, (&dy, s.c_out, d.c_out), (s.c_in, d.c_in), &w, |_, dyg, wg, dxg| {
                    winograd::backward_data(token, algo, &d, dyg, wg, dxg);
                });
                assert!(
                    bits(&got) == bits(&want),
                    "{algo} {token:?}: backward-data differs from the per-group dense pass"
                );
            }
        }
    }

    #[test]
    fn gather_and_scatter_are_inverse_data_movement() {
        let src: Vec<f32> = (0..5 * 6).map(|i| i as f32).collect();
        let mut g = vec![f32::NAN; 5 * 2];
        gather(&src, 6, (2, 2), &mut g);
        assert_eq!(&g[..4], &[2.0, 3.0, 8.0, 9.0]);
        let mut back = vec![0.0; 5 * 6];
        scatter(&g, (2, 2), &mut back, 6);
        for (p, (a, b)) in back.chunks_exact(6).zip(src.chunks_exact(6)).enumerate() {
            assert_eq!(a[2..4], b[2..4], "pixel {p}");
            assert!(a[..2].iter().chain(&a[4..]).all(|&v| v == 0.0), "pixel {p}");
        }
    }
}
