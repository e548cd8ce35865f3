//! Grouped convolution on Winograd: each group's channels gathered into a
//! dense NHWC tensor, the dense Winograd pass run on it (see
//! [`super::winograd`]), the result scattered back into the group's
//! channels.
//!
//! Why: a grouped layer such as ResNeXt's 56x56x128 with 4 groups does as
//! many multiply-adds as a dense 64->64 layer, and Winograd F(4x4, 3x3)
//! does a quarter of them; one im2col GEMM per group (see
//! [`super::grouped`]) cannot come near that. The gather and scatter move
//! each activation once more (a strided copy of `c_in / groups` contiguous
//! channels per pixel), which is cheap next to the transforms.
//!
//! Group `g` of `groups`: input channels `g*cig .. (g+1)*cig`, output
//! channels `g*cog .. (g+1)*cog`, filter columns `g*cog ..` of the grouped
//! HWIO filter `[kh, kw, cig, c_out]` (whose rows are exactly the dense
//! group filter's rows). Groups run one after another, each pass
//! parallel inside; every element is computed by exactly one group, so the
//! result is the dense Winograd result of that group, bit for bit, and the
//! backward-filter is as deterministic as the dense one.
//!
//! Buffers: three growth-only thread-local scratch slots of the calling
//! thread (`Column` for the gathered input or output gradient, `Partial`
//! for the dense result, `Table` for the group's filter); the dense
//! Winograd kernels use other slots, so the steady state allocates nothing.

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

/// Forward pass (lengths checked, `supports(s)` holds).
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
    let _ftz = FtzGuard::new();
    let d = group_shape(s);
    let (cig, cog) = (d.c_in, d.c_out);
    let mut x = scratch_f32(Slot::Column, d.input_len());
    let mut y = scratch_f32(Slot::Partial, d.output_len());
    let mut w = scratch_f32(Slot::Table, d.filter_len());
    for g in 0..s.groups {
        gather(input, s.c_in, (g * cig, cig), &mut x);
        gather(filter, s.c_out, (g * cog, cog), &mut w);
        let b = bias.map(|b| &b[g * cog..][..cog]);
        winograd::forward(token, algo, &d, &x, &w, b, activation, &mut y);
        scatter(&y, (g * cog, cog), output, s.c_out);
    }
}

/// Backward-data pass (overwrites `grad_input`; lengths checked, `supports(s)` holds).
pub(crate) fn backward_data(
    token: Token,
    algo: ConvAlgo,
    s: &ConvShape,
    grad_output: &[f32],
    filter: &[f32],
    grad_input: &mut [f32],
) {
    let _ftz = FtzGuard::new();
    let d = group_shape(s);
    let (cig, cog) = (d.c_in, d.c_out);
    let mut dy = scratch_f32(Slot::Column, d.output_len());
    let mut dx = scratch_f32(Slot::Partial, d.input_len());
    let mut w = scratch_f32(Slot::Table, d.filter_len());
    for g in 0..s.groups {
        gather(grad_output, s.c_out, (g * cog, cog), &mut dy);
        gather(filter, s.c_out, (g * cog, cog), &mut w);
        winograd::backward_data(token, algo, &d, &dy, &w, &mut dx);
        scatter(&dx, (g * cig, cig), grad_input, s.c_in);
    }
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

    #[test]
    fn every_pass_matches_reference_on_both_variants() {
        let b = |n, h, w, ci, co, g| ConvShape::new(n, h, w, ci, co, 3, 3).unwrap().with_groups(g).unwrap();
        let shapes = [
            b(2, 9, 7, 8, 12, 4).with_padding(Padding::Same).unwrap(),
            b(1, 10, 11, 6, 4, 2),
            b(2, 6, 6, 9, 3, 3).with_padding(Padding::Explicit { top: 2, bottom: 0, left: 1, right: 2 }).unwrap(),
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
                    close("forward", &s, &got, &want, scale);

                    let mut want = vec![0.0; s.input_len()];
                    reference::backward_data(&s, &dy, &w, &mut want);
                    let mut got = vec![f32::NAN; s.input_len()];
                    backward_data(token, algo, &s, &dy, &w, &mut got);
                    close("backward_data", &s, &got, &want, scale);

                    let mut want = vec![0.0; s.filter_len()];
                    reference::backward_filter(&s, &x, &dy, &mut want);
                    let mut got = vec![f32::NAN; s.filter_len()];
                    backward_filter(token, algo, &s, &x, &dy, &mut got);
                    close("backward_filter", &s, &got, &want, (s.n * s.out_h() * s.out_w()) as f32);
                }
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
