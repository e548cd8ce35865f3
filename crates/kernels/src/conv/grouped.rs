//! Grouped convolution (`groups > 1`) as one im2col + GEMM per group, over
//! strided views: nothing is gathered into per-group tensors.
//!
//! Group `g` connects input channels `g*cig .. (g+1)*cig` to output channels
//! `g*cog .. (g+1)*cog` (`cig = c_in / groups`, `cog = c_out / groups`). Its
//! column matrix holds, for each output pixel, the `kh * kw * cig` inputs of
//! that group in `(ky, kx, ci)` order, which is exactly the row order of the
//! grouped HWIO filter `[kh, kw, cig, c_out]`; the group's `Kg x cog` block
//! of that filter starts at column `g * cog` with row stride `c_out`. So
//! every pass is the dense im2col pass (see [`super::im2col`]) with a
//! channel offset in the packing and strided GEMM operands:
//!
//! - forward: `y[rows, g*cog..] = col_g[rows, Kg] * w[Kg, g*cog..]` for
//!   every group of a row tile, then bias and activation on the whole tile;
//! - backward-data: `dcol_g = dy[rows, g*cog..] * w_g^T`, added back into
//!   the group's input channels (col2im), one task per image;
//! - backward-filter: `dw[Kg, g*cog..] += col_g^T * dy[rows, g*cog..]`, the
//!   row tiles in order, the GEMMs of one tile in parallel over fixed
//!   (group, block of `Kg`) pairs, so every element of `dw` sums its tiles
//!   in the same order for any thread count.
//!
//! Column tiles are bounded by [`super::im2col::MAX_COL_BUFFER_BYTES`] for
//! all groups together. Depthwise shapes (one input channel per group) have
//! their own kernel in [`super::depthwise`]; this path runs them too (with
//! `Kg = kh * kw`, GEMMs too thin to be fast), so `Im2col` stays fully
//! general.

use super::im2col::{epilogue, pack_channel_rows, unpack_add_channel_rows, MAX_COL_BUFFER_BYTES};
use super::ConvShape;
use crate::activation::Activation;
use crate::arch::Token;
use crate::arch::{scratch_f32, scratch_f32_task, FtzGuard, SendPtr, Slot};
use crate::gemm::{sgemm_strided, Gemm};
use rayon::prelude::*;

/// Forward splits the rows into at least this many tiles when there are
/// enough rows (a fixed number, never the thread count).
const MIN_FORWARD_TILES: usize = 16;

/// Backward-filter GEMMs cover this many rows of `Kg` each.
const DW_BLOCK_K: usize = 64;

/// Columns of one group's column matrix: `kh * kw * (c_in / groups)`.
fn group_patch_len(s: &ConvShape) -> usize {
    s.kh * s.kw * s.c_in_per_group()
}

/// Rows whose columns for every group fit in [`MAX_COL_BUFFER_BYTES`].
fn budget_rows(s: &ConvShape) -> usize {
    (MAX_COL_BUFFER_BYTES / (4 * s.kh * s.kw * s.c_in)).max(1)
}

/// Packs rows `first_row .. first_row + rows` of group `g`'s column matrix
/// into `out` (`rows * Kg` values, overwritten; zeros for padding taps):
/// the dense packing over the group's channel window.
fn pack_group_rows(s: &ConvShape, input: &[f32], g: usize, first_row: usize, rows: usize, out: &mut [f32]) {
    let cig = s.c_in_per_group();
    pack_channel_rows(s, input, (g * cig, cig), first_row, rows, out);
}

/// col2im of group `g` for rows `first .. first + rows` of ONE image,
/// adding into that image's gradient `img` (`[h, w, c_in]`).
fn unpack_add_group(s: &ConvShape, col: &[f32], g: usize, first: usize, rows: usize, img: &mut [f32]) {
    let cig = s.c_in_per_group();
    unpack_add_channel_rows(s, col, (g * cig, cig), first, rows, img);
}

/// Forward pass with the activation fused into the epilogue (lengths checked by the caller).
pub(crate) fn forward(
    token: Token,
    s: &ConvShape,
    input: &[f32],
    filter: &[f32],
    bias: Option<&[f32]>,
    activation: Activation,
    output: &mut [f32],
) {
    let _ftz = FtzGuard::new();
    let k = group_patch_len(s);
    let (co, cog) = (s.c_out, s.c_out_per_group());
    let total = s.n * s.out_h() * s.out_w();
    let tile = budget_rows(s).min(total.div_ceil(MIN_FORWARD_TILES).max(8));
    let out = SendPtr(output.as_mut_ptr());
    (0..total.div_ceil(tile)).into_par_iter().for_each(|t| {
        let _ftz = FtzGuard::new();
        let r0 = t * tile;
        let rows = tile.min(total - r0);
        let mut col = scratch_f32_task(Slot::Column, rows * k, tile * k);
        // SAFETY: tile `t` owns output rows r0 .. r0+rows (disjoint across
        // tasks, inside `output` because r0 + rows <= total).
        let y = unsafe { std::slice::from_raw_parts_mut(out.get().add(r0 * co), rows * co) };
        for g in 0..s.groups {
            pack_group_rows(s, input, g, r0, rows, &mut col);
            // SAFETY: col is rows x Kg dense; the group's filter block is
            // Kg x cog at column g*cog with row stride c_out (inside the
            // Kg x c_out filter); y's block is rows x cog at column g*cog
            // with row stride c_out, inside y.
            unsafe {
                sgemm_strided(
                    token,
                    &Gemm {
                        m: rows,
                        k,
                        n: cog,
                        alpha: 1.0,
                        a: col.as_ptr(),
                        rsa: k,
                        csa: 1,
                        b: filter.as_ptr().add(g * cog),
                        rsb: co,
                        csb: 1,
                        beta: 0.0,
                        c: y.as_mut_ptr().add(g * cog),
                        rsc: co,
                        csc: 1,
                    },
                )
            };
        }
        epilogue(y, co, bias, activation);
    });
}

/// Backward-data pass (overwrites `grad_input`).
pub(crate) fn backward_data(token: Token, s: &ConvShape, grad_output: &[f32], filter: &[f32], grad_input: &mut [f32]) {
    let _ftz = FtzGuard::new();
    let k = group_patch_len(s);
    let (co, cog) = (s.c_out, s.c_out_per_group());
    let per_img = s.out_h() * s.out_w();
    let tile = budget_rows(s).min(per_img);
    grad_input.par_chunks_mut(s.h * s.w * s.c_in).enumerate().for_each(|(n, gimg)| {
        let _ftz = FtzGuard::new();
        gimg.fill(0.0);
        let mut dcol = scratch_f32(Slot::Column, tile * k);
        let mut first = 0;
        while first < per_img {
            let rows = tile.min(per_img - first);
            let dy = &grad_output[(n * per_img + first) * co..][..rows * co];
            let d = &mut dcol[..rows * k];
            for g in 0..s.groups {
                // SAFETY: dy's group block is rows x cog at column g*cog
                // (row stride c_out); the group's filter block read
                // transposed is cog x Kg with strides (1, c_out) from
                // column g*cog; d is rows x Kg dense.
                unsafe {
                    sgemm_strided(
                        token,
                        &Gemm {
                            m: rows,
                            k: cog,
                            n: k,
                            alpha: 1.0,
                            a: dy.as_ptr().add(g * cog),
                            rsa: co,
                            csa: 1,
                            b: filter.as_ptr().add(g * cog),
                            rsb: 1,
                            csb: co,
                            beta: 0.0,
                            c: d.as_mut_ptr(),
                            rsc: k,
                            csc: 1,
                        },
                    )
                };
                unpack_add_group(s, d, g, first, rows, gimg);
            }
            first += rows;
        }
    });
}

/// Backward-filter pass (overwrites `grad_filter`).
pub(crate) fn backward_filter(
    token: Token,
    s: &ConvShape,
    input: &[f32],
    grad_output: &[f32],
    grad_filter: &mut [f32],
) {
    let _ftz = FtzGuard::new();
    let k = group_patch_len(s);
    let (co, cog, groups) = (s.c_out, s.c_out_per_group(), s.groups);
    let total = s.n * s.out_h() * s.out_w();
    let tile = budget_rows(s).min(total);
    // One column matrix per group, [groups][tile][Kg].
    let mut col = scratch_f32(Slot::Column, groups * tile * k);
    let kblocks = k.div_ceil(DW_BLOCK_K);
    let dw = SendPtr(grad_filter.as_mut_ptr());
    let mut r0 = 0;
    while r0 < total {
        let rows = tile.min(total - r0);
        col[..groups * tile * k].par_chunks_mut(tile * k).enumerate().for_each(|(g, part)| {
            let _ftz = FtzGuard::new();
            pack_group_rows(s, input, g, r0, rows, &mut part[..rows * k]);
        });
        let col = &col[..];
        let dy = &grad_output[r0 * co..][..rows * co];
        let beta = if r0 == 0 { 0.0 } else { 1.0 };
        (0..groups * kblocks).into_par_iter().for_each(|job| {
            let _ftz = FtzGuard::new();
            let (g, b) = (job / kblocks, job % kblocks);
            let k0 = b * DW_BLOCK_K;
            let m = DW_BLOCK_K.min(k - k0);
            let c = &col[g * tile * k..][..rows * k];
            // SAFETY: a = col_g^T restricted to columns k0..k0+m (m x rows,
            // strides (1, Kg)); b = dy's group block (rows x cog, row stride
            // c_out, from column g*cog); c = rows k0..k0+m, columns
            // g*cog..(g+1)*cog of dw (strides (c_out, 1)): disjoint across
            // jobs, inside dw.
            unsafe {
                sgemm_strided(
                    token,
                    &Gemm {
                        m,
                        k: rows,
                        n: cog,
                        alpha: 1.0,
                        a: c.as_ptr().add(k0),
                        rsa: 1,
                        csa: k,
                        b: dy.as_ptr().add(g * cog),
                        rsb: co,
                        csb: 1,
                        beta,
                        c: dw.get().add(k0 * co + g * cog),
                        rsc: co,
                        csc: 1,
                    },
                )
            };
        });
        r0 += rows;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::{reference, Padding};

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len).map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0).collect()
    }

    fn close(what: &str, s: &ConvShape, a: &[f32], b: &[f32], terms: usize) {
        let tol = 2e-6 * terms as f32 + 1e-5;
        for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol, "{what} {s} element {i}: {x} vs {y}");
        }
    }

    #[test]
    fn every_pass_matches_reference() {
        let b = |n, h, w, ci, co, k, g| ConvShape::new(n, h, w, ci, co, k, k).unwrap().with_groups(g).unwrap();
        let shapes = [
            b(2, 7, 6, 8, 12, 3, 4),
            b(1, 9, 9, 6, 6, 3, 6).with_stride(2, 2).unwrap().with_padding(Padding::Same).unwrap(),
            b(2, 8, 8, 4, 8, 3, 2).with_dilation(2, 1).unwrap().with_padding(Padding::Same).unwrap(),
            b(3, 5, 5, 9, 3, 1, 3),
            b(1, 4, 5, 4, 8, 2, 4).with_padding(Padding::Explicit { top: 2, bottom: 0, left: 1, right: 1 }).unwrap(),
        ];
        for (token, s) in Token::every().into_iter().flat_map(|t| shapes.iter().map(move |&s| (t, s))) {
            let (x, w, bias, dy) =
                (data(s.input_len(), 1), data(s.filter_len(), 2), data(s.c_out, 3), data(s.output_len(), 4));
            let mut want = vec![0.0; s.output_len()];
            reference::forward(&s, &x, &w, Some(&bias), &mut want);
            want.iter_mut().for_each(|v| *v = v.max(0.0));
            let mut got = vec![f32::NAN; s.output_len()];
            forward(token, &s, &x, &w, Some(&bias), Activation::Relu, &mut got);
            close("forward", &s, &got, &want, s.kh * s.kw * s.c_in_per_group());

            let mut want = vec![0.0; s.input_len()];
            reference::backward_data(&s, &dy, &w, &mut want);
            let mut got = vec![f32::NAN; s.input_len()];
            backward_data(token, &s, &dy, &w, &mut got);
            close("backward_data", &s, &got, &want, s.kh * s.kw * s.c_out_per_group());

            let mut want = vec![0.0; s.filter_len()];
            reference::backward_filter(&s, &x, &dy, &mut want);
            let mut got = vec![f32::NAN; s.filter_len()];
            backward_filter(token, &s, &x, &dy, &mut got);
            close("backward_filter", &s, &got, &want, s.n * s.out_h() * s.out_w());
        }
    }

    /// Grouped convolution is the dense convolution of each group's channels:
    /// checks the reference itself against per-group dense calls.
    #[test]
    fn reference_groups_are_independent_dense_convolutions() {
        let s = ConvShape::new(2, 5, 6, 6, 4, 3, 3).unwrap().with_groups(2).unwrap();
        let x = data(s.input_len(), 5);
        let w = data(s.filter_len(), 6);
        let mut y = vec![f32::NAN; s.output_len()];
        reference::forward(&s, &x, &w, None, &mut y);
        let dense = ConvShape::new(2, 5, 6, 3, 2, 3, 3).unwrap();
        for g in 0..2 {
            let xg: Vec<f32> = x.chunks_exact(6).flat_map(|p| p[g * 3..][..3].to_vec()).collect();
            let wg: Vec<f32> = w.chunks_exact(4).flat_map(|r| r[g * 2..][..2].to_vec()).collect();
            let mut yg = vec![f32::NAN; dense.output_len()];
            reference::forward(&dense, &xg, &wg, None, &mut yg);
            let got: Vec<f32> = y.chunks_exact(4).flat_map(|p| p[g * 2..][..2].to_vec()).collect();
            assert_eq!(got, yg);
        }
    }
}
