//! The `im2col` algorithm: convolution as GEMM over a bounded column buffer.
//!
//! Each output pixel `(n, oy, ox)` is one row of the column matrix `col`,
//! holding the input patch it sees, in the filter's HWIO order
//! `(ky, kx, ci)` (zeros where the window hangs over the padding), so
//! `K = kh * kw * c_in` columns and the HWIO filter *is* the `K x c_out`
//! right-hand matrix:
//!
//! - forward: `y[rows, c_out] = col[rows, K] * w[K, c_out]`, then bias and
//!   activation on the tile while it is in cache;
//! - backward-data: `dcol[rows, K] = dy[rows, c_out] * w^T`, then `col2im`
//!   adds each row back into the input positions it came from;
//! - backward-filter: `dw[K, c_out] += col^T[K, rows] * dy[rows, c_out]`,
//!   one row tile after another.
//!
//! The column matrix of a whole batch can be huge (VGG's 8x56x56x64 layer
//! needs 7 MiB per image; users of other frameworks have hit multi-GB
//! buffers), so rows are processed in tiles of at most
//! [`MAX_COL_BUFFER_BYTES`]. The packing ([`im2col_pack`], [`col2im_add`])
//! is exact data movement and public, so it can be tested for equality.
//!
//! Threads: forward splits the rows into fixed tiles, one rayon task each,
//! each with its own thread-local column buffer. Backward-data runs one task
//! per image (col2im of different tiles of one image would overlap), tiles
//! of that image in order. Backward-filter walks the row tiles in order and
//! parallelises the packing and the GEMM over fixed blocks of `dw`, so every
//! element of `dw` sums its tiles in the same order for any thread count.

use super::ConvShape;
use crate::activation::Activation;
use crate::arch::Token;
use crate::arch::{scratch_f32, scratch_f32_task, FtzGuard, SendPtr, Slot};
use crate::error::check_len;
use crate::gemm::{sgemm_strided, Gemm};
use crate::Result;
use rayon::prelude::*;

/// Upper bound, in bytes, of one column-buffer tile.
///
/// 2 MiB: big enough that the GEMM on a tile is long (hundreds of rows even
/// for VGG's `K = 2304`), so packing and call overhead are amortised; small
/// enough that one tile per thread stays in this machine's L2+L3 share and
/// that memory does not grow with the batch. A shape whose single patch
/// is larger than this (`K` over half a million) uses a one-row tile.
pub const MAX_COL_BUFFER_BYTES: usize = 2 << 20;

/// Forward splits the rows into at least this many tiles when there are
/// enough rows, so small layers still keep every core busy. A fixed number,
/// not the thread count, so tiling never depends on the pool.
const MIN_FORWARD_TILES: usize = 16;

/// `dw` is split into blocks of this many rows of `K` for the parallel
/// backward-filter GEMM (fixed, so results never depend on the pool size).
const DW_BLOCK_K: usize = 64;

/// Columns of the column matrix: `kh * kw * c_in`.
fn patch_len(s: &ConvShape) -> usize {
    s.kh * s.kw * s.c_in
}

/// Rows that fit in [`MAX_COL_BUFFER_BYTES`] (at least one).
fn budget_rows(s: &ConvShape) -> usize {
    (MAX_COL_BUFFER_BYTES / (4 * patch_len(s))).max(1)
}

/// Packs rows `first_row .. first_row + rows` of the column matrix of
/// `input` into `out` (`rows * kh*kw*c_in` values, overwritten). Row `r` is
/// output pixel `r` in NHWC order; columns are `(ky, kx, ci)`; taps in the
/// padding are zero. Exact data movement.
///
/// ```
/// use convnet_kernels::conv::{im2col::im2col_pack, ConvShape};
/// let s = ConvShape::new(1, 2, 3, 1, 1, 2, 2)?; // 1x2 output
/// let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
/// let mut col = [0.0; 8];
/// im2col_pack(&s, &x, 0, 2, &mut col)?;
/// assert_eq!(col, [1.0, 2.0, 4.0, 5.0, 2.0, 3.0, 5.0, 6.0]);
/// # Ok::<(), convnet_kernels::Error>(())
/// ```
pub fn im2col_pack(s: &ConvShape, input: &[f32], first_row: usize, rows: usize, out: &mut [f32]) -> Result<()> {
    s.validate()?;
    check_len("input", input.len(), s.input_len(), s)?;
    check_rows(s, first_row, rows)?;
    check_len("out", out.len(), rows * patch_len(s), s)?;
    pack_rows(s, input, first_row, rows, out);
    Ok(())
}

/// Adds each row of `col` (rows `first_row .. first_row + rows` of the
/// column matrix, `rows * kh*kw*c_in` values) back into the input positions
/// it was packed from, skipping padding taps: the adjoint of
/// [`im2col_pack`]. `grad_input` is accumulated into, not overwritten.
pub fn col2im_add(s: &ConvShape, col: &[f32], first_row: usize, rows: usize, grad_input: &mut [f32]) -> Result<()> {
    s.validate()?;
    check_len("grad_input", grad_input.len(), s.input_len(), s)?;
    check_rows(s, first_row, rows)?;
    check_len("col", col.len(), rows * patch_len(s), s)?;
    let img = s.h * s.w * s.c_in;
    // Rows of one image only touch that image: pass each image's slice.
    let per_img = s.out_h() * s.out_w();
    let mut r = first_row;
    let end = first_row + rows;
    while r < end {
        let n = r / per_img;
        let stop = end.min((n + 1) * per_img);
        let c = &col[(r - first_row) * patch_len(s)..(stop - first_row) * patch_len(s)];
        unpack_add_image(s, c, r - n * per_img, stop - r, &mut grad_input[n * img..(n + 1) * img]);
        r = stop;
    }
    Ok(())
}

fn check_rows(s: &ConvShape, first_row: usize, rows: usize) -> Result<()> {
    let total = s.n * s.out_h() * s.out_w();
    if first_row.checked_add(rows).is_none_or(|e| e > total) {
        return Err(crate::Error::InvalidShape {
            shape: s.to_string(),
            reason: format!("rows {first_row}..{first_row}+{rows} exceed the {total} rows of the column matrix"),
        });
    }
    Ok(())
}

/// Input coordinate of output `o`, tap `k` along one axis, if inside.
#[inline(always)]
fn tap(o: usize, k: usize, stride: usize, dilation: usize, pad: usize, size: usize) -> Option<usize> {
    (o * stride + k * dilation).checked_sub(pad).filter(|&i| i < size)
}

/// The body of [`im2col_pack`] (lengths already checked): all channels.
pub(crate) fn pack_rows(s: &ConvShape, input: &[f32], first_row: usize, rows: usize, out: &mut [f32]) {
    pack_channel_rows(s, input, (0, s.c_in), first_row, rows, out);
}

/// Packs rows `first_row .. first_row + rows` of the column matrix of the
/// input channels `c0 .. c0 + cn` (`channels = (c0, cn)`) into `out`
/// (`rows * kh*kw*cn` values, overwritten; zeros for padding taps): the
/// whole matrix for `(0, c_in)`, one group's for a grouped convolution
/// (see [`super::grouped`]). Exact data movement.
pub(crate) fn pack_channel_rows(
    s: &ConvShape,
    input: &[f32],
    channels: (usize, usize),
    first_row: usize,
    rows: usize,
    out: &mut [f32],
) {
    let (oh, ow, c) = (s.out_h(), s.out_w(), s.c_in);
    let (c0, cn) = channels;
    let k = s.kh * s.kw * cn;
    debug_assert_eq!(out.len(), rows * k);
    let mut n = first_row / (oh * ow);
    let mut oy = first_row / ow % oh;
    let mut ox = first_row % ow;
    for dst in out.chunks_exact_mut(k) {
        let img = &input[n * s.h * s.w * c..][..s.h * s.w * c];
        for ky in 0..s.kh {
            let drow = &mut dst[ky * s.kw * cn..][..s.kw * cn];
            let Some(iy) = tap(oy, ky, s.stride_h, s.dilation_h, s.pad_top, s.h) else {
                drow.fill(0.0);
                continue;
            };
            let srow = &img[iy * s.w * c..][..s.w * c];
            for (kx, d) in drow.chunks_exact_mut(cn).enumerate() {
                match tap(ox, kx, s.stride_w, s.dilation_w, s.pad_left, s.w) {
                    Some(ix) => d.copy_from_slice(&srow[ix * c + c0..][..cn]),
                    None => d.fill(0.0),
                }
            }
        }
        ox += 1;
        if ox == ow {
            ox = 0;
            oy += 1;
            if oy == oh {
                oy = 0;
                n += 1;
            }
        }
    }
}

/// col2im for rows `first .. first + rows` of ONE image (`first` counted
/// from that image's first pixel), adding into that image's gradient.
fn unpack_add_image(s: &ConvShape, col: &[f32], first: usize, rows: usize, img: &mut [f32]) {
    unpack_add_channel_rows(s, col, (0, s.c_in), first, rows, img);
}

/// The adjoint of [`pack_channel_rows`] for rows `first .. first + rows`
/// of ONE image: adds each row of `col` (`rows * kh*kw*cn` values) into
/// input channels `c0 .. c0 + cn` of that image's gradient `img`
/// (`[h, w, c_in]`), skipping padding taps.
pub(crate) fn unpack_add_channel_rows(
    s: &ConvShape,
    col: &[f32],
    channels: (usize, usize),
    first: usize,
    rows: usize,
    img: &mut [f32],
) {
    let (ow, c) = (s.out_w(), s.c_in);
    let (c0, cn) = channels;
    let k = s.kh * s.kw * cn;
    debug_assert_eq!(col.len(), rows * k);
    let mut oy = first / ow;
    let mut ox = first % ow;
    for src in col.chunks_exact(k) {
        for ky in 0..s.kh {
            let Some(iy) = tap(oy, ky, s.stride_h, s.dilation_h, s.pad_top, s.h) else { continue };
            let srow = &src[ky * s.kw * cn..][..s.kw * cn];
            let drow = &mut img[iy * s.w * c..][..s.w * c];
            for (kx, v) in srow.chunks_exact(cn).enumerate() {
                if let Some(ix) = tap(ox, kx, s.stride_w, s.dilation_w, s.pad_left, s.w) {
                    for (d, &v) in drow[ix * c + c0..][..cn].iter_mut().zip(v) {
                        *d += v;
                    }
                }
            }
        }
        ox += 1;
        if ox == ow {
            ox = 0;
            oy += 1;
        }
    }
}

/// Bias and activation on `rows` rows of `c` channels, in place.
pub(crate) fn epilogue(y: &mut [f32], c: usize, bias: Option<&[f32]>, activation: Activation) {
    match (bias, activation) {
        (None, Activation::Linear) => {}
        (None, Activation::Relu) => y.iter_mut().for_each(|v| *v = v.max(0.0)),
        (Some(b), Activation::Linear) => {
            for row in y.chunks_exact_mut(c) {
                row.iter_mut().zip(b).for_each(|(v, &b)| *v += b);
            }
        }
        (Some(b), Activation::Relu) => {
            for row in y.chunks_exact_mut(c) {
                row.iter_mut().zip(b).for_each(|(v, &b)| *v = (*v + b).max(0.0));
            }
        }
    }
}

/// Forward pass with the activation fused into the epilogue.
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
    let k = patch_len(s);
    let total = s.n * s.out_h() * s.out_w();
    let tile = budget_rows(s).min(total.div_ceil(MIN_FORWARD_TILES).max(8));
    let tiles = total.div_ceil(tile);
    let co = s.c_out;
    let out = SendPtr(output.as_mut_ptr());
    (0..tiles).into_par_iter().for_each(|t| {
        let _ftz = FtzGuard::new();
        let r0 = t * tile;
        let rows = tile.min(total - r0);
        let mut col = scratch_f32_task(Slot::Column, rows * k, tile * k);
        pack_rows(s, input, r0, rows, &mut col);
        // SAFETY: tile `t` owns output rows r0 .. r0+rows (disjoint across
        // tasks, inside `output` because r0 + rows <= total).
        let y = unsafe { std::slice::from_raw_parts_mut(out.get().add(r0 * co), rows * co) };
        // SAFETY: col is rows x k dense, filter k x c_out dense, y rows x c_out.
        unsafe {
            sgemm_strided(
                token,
                &Gemm {
                    m: rows,
                    k,
                    n: co,
                    alpha: 1.0,
                    a: col.as_ptr(),
                    rsa: k,
                    csa: 1,
                    b: filter.as_ptr(),
                    rsb: co,
                    csb: 1,
                    beta: 0.0,
                    c: y.as_mut_ptr(),
                    rsc: co,
                    csc: 1,
                },
            )
        };
        epilogue(y, co, bias, activation);
    });
}

/// Backward-data pass (overwrites `grad_input`).
pub(crate) fn backward_data(token: Token, s: &ConvShape, grad_output: &[f32], filter: &[f32], grad_input: &mut [f32]) {
    let _ftz = FtzGuard::new();
    let k = patch_len(s);
    let per_img = s.out_h() * s.out_w();
    let tile = budget_rows(s).min(per_img);
    let co = s.c_out;
    let img_len = s.h * s.w * s.c_in;
    grad_input.par_chunks_mut(img_len).enumerate().for_each(|(n, gimg)| {
        let _ftz = FtzGuard::new();
        gimg.fill(0.0);
        let mut dcol = scratch_f32(Slot::Column, tile * k);
        let mut first = 0;
        while first < per_img {
            let rows = tile.min(per_img - first);
            let dy = &grad_output[(n * per_img + first) * co..][..rows * co];
            let d = &mut dcol[..rows * k];
            // SAFETY: dy is rows x c_out dense; the filter read transposed is
            // c_out x k with strides (1, c_out); d is rows x k dense.
            unsafe {
                sgemm_strided(
                    token,
                    &Gemm {
                        m: rows,
                        k: co,
                        n: k,
                        alpha: 1.0,
                        a: dy.as_ptr(),
                        rsa: co,
                        csa: 1,
                        b: filter.as_ptr(),
                        rsb: 1,
                        csb: co,
                        beta: 0.0,
                        c: d.as_mut_ptr(),
                        rsc: k,
                        csc: 1,
                    },
                )
            };
            unpack_add_image(s, d, first, rows, gimg);
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
    let k = patch_len(s);
    let total = s.n * s.out_h() * s.out_w();
    let tile = budget_rows(s).min(total);
    let co = s.c_out;
    let mut col = scratch_f32(Slot::Column, tile * k);
    let pack_chunk = tile.div_ceil(MIN_FORWARD_TILES).max(16);
    let kblocks = k.div_ceil(DW_BLOCK_K);
    let dw = SendPtr(grad_filter.as_mut_ptr());
    let mut r0 = 0;
    while r0 < total {
        let rows = tile.min(total - r0);
        let c = &mut col[..rows * k];
        c.par_chunks_mut(pack_chunk * k).enumerate().for_each(|(i, part)| {
            let _ftz = FtzGuard::new();
            pack_rows(s, input, r0 + i * pack_chunk, part.len() / k, part);
        });
        let c = &col[..rows * k];
        let dy = &grad_output[r0 * co..][..rows * co];
        let beta = if r0 == 0 { 0.0 } else { 1.0 };
        (0..kblocks).into_par_iter().for_each(|b| {
            let _ftz = FtzGuard::new();
            let k0 = b * DW_BLOCK_K;
            let m = DW_BLOCK_K.min(k - k0);
            // SAFETY: a = col^T restricted to columns k0..k0+m (m x rows,
            // strides (1, k)); b = dy (rows x c_out dense); c = rows k0..k0+m
            // of dw (strides (c_out, 1)), disjoint across blocks, inside dw.
            unsafe {
                sgemm_strided(
                    token,
                    &Gemm {
                        m,
                        k: rows,
                        n: co,
                        alpha: 1.0,
                        a: c.as_ptr().add(k0),
                        rsa: 1,
                        csa: k,
                        b: dy.as_ptr(),
                        rsb: co,
                        csb: 1,
                        beta,
                        c: dw.get().add(k0 * co),
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

    fn shapes() -> Vec<ConvShape> {
        let b = |n, h, w, ci, co, k| ConvShape::new(n, h, w, ci, co, k, k).unwrap();
        vec![
            b(2, 28, 28, 1, 32, 3),
            b(2, 13, 13, 32, 64, 3),
            b(3, 5, 5, 64, 64, 3),
            b(2, 7, 6, 3, 17, 5),
            b(2, 6, 6, 5, 1, 1),
            b(1, 9, 8, 4, 33, 3).with_stride(2, 2).unwrap().with_padding(Padding::Same).unwrap(),
            b(2, 9, 9, 3, 3, 3).with_dilation(2, 2).unwrap().with_padding(Padding::Same).unwrap(),
            b(1, 4, 5, 2, 3, 2).with_padding(Padding::Explicit { top: 3, bottom: 0, left: 1, right: 4 }).unwrap(),
        ]
    }

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len).map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0).collect()
    }

    fn close(a: &[f32], b: &[f32], scale: f32) {
        for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-4 * scale, "element {i}: {x} vs {y}");
        }
    }

    #[test]
    fn all_passes_match_reference() {
        for (token, s) in Token::every().into_iter().flat_map(|t| shapes().into_iter().map(move |s| (t, s))) {
            let x = data(s.input_len(), 1);
            let w = data(s.filter_len(), 2);
            let b = data(s.c_out, 3);
            let dy = data(s.output_len(), 4);
            let scale = (s.kh * s.kw * s.c_in.max(s.c_out)) as f32;
            let mut want = vec![0.0; s.output_len()];
            reference::forward(&s, &x, &w, Some(&b), &mut want);
            want.iter_mut().for_each(|v| *v = v.max(0.0));
            let mut got = vec![f32::NAN; s.output_len()];
            forward(token, &s, &x, &w, Some(&b), Activation::Relu, &mut got);
            close(&got, &want, scale);

            let mut want = vec![0.0; s.input_len()];
            reference::backward_data(&s, &dy, &w, &mut want);
            let mut got = vec![f32::NAN; s.input_len()];
            backward_data(token, &s, &dy, &w, &mut got);
            close(&got, &want, scale);

            let mut want = vec![0.0; s.filter_len()];
            reference::backward_filter(&s, &x, &dy, &mut want);
            let mut got = vec![f32::NAN; s.filter_len()];
            backward_filter(token, &s, &x, &dy, &mut got);
            close(&got, &want, (s.n * s.out_h() * s.out_w()) as f32);
        }
    }

    #[test]
    fn pack_and_col2im_are_adjoint_data_movement() {
        let s = shapes()[5];
        let x = data(s.input_len(), 9);
        let rows = s.n * s.out_h() * s.out_w();
        let mut col = vec![f32::NAN; rows * patch_len(&s)];
        im2col_pack(&s, &x, 0, rows, &mut col).unwrap();
        // Packing a sub-range gives exactly the same rows.
        let mut part = vec![f32::NAN; 3 * patch_len(&s)];
        im2col_pack(&s, &x, 4, 3, &mut part).unwrap();
        assert_eq!(part[..], col[4 * patch_len(&s)..7 * patch_len(&s)]);
        // col2im of ones counts how often each input element is read.
        let ones = vec![1.0; col.len()];
        let mut counts = vec![0.0; s.input_len()];
        col2im_add(&s, &ones, 0, rows, &mut counts).unwrap();
        let nonzero_taps = col.iter().filter(|v| **v != 0.0).count() as f32;
        let x_nonzero: f32 = counts.iter().zip(&x).filter(|(_, v)| **v != 0.0).map(|(c, _)| *c).sum();
        assert_eq!(nonzero_taps, x_nonzero);
        assert!(im2col_pack(&s, &x, rows - 1, 2, &mut part[..2 * patch_len(&s)]).is_err());
    }
}
