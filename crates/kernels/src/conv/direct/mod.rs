//! The `direct` algorithm: register-blocked SIMD convolution over channels,
//! with no column buffer, for every kernel size, stride, dilation and padding.
//!
//! Contract with `conv/mod.rs` (lengths and shape are already checked there):
//! `supports` says whether a shape and pass can run; the pass functions
//! overwrite their output and must be correct for every shape `supports` accepts.
//!
//! # Forward and backward-data: one gather engine
//!
//! Both passes compute, for every output pixel, `out[p, 0..C'] = bias +
//! sum over valid taps t, sum over c of src[p + off(t), c] * wpack[t, c, 0..C']`.
//! Forward reads the input with the HWIO filter; backward-data reads
//! `grad_output` with the filter transposed to `[ky, kx, co, ci]`, and its
//! taps are the `(ky, kx)` for which `iy + pad - ky*dilation` is a multiple
//! of the stride (the sub-pixel decomposition of a strided transposed
//! convolution: each residue class of input positions is a stride-1
//! convolution with its own subset of taps).
//!
//! Along each axis every output coordinate gets a *class*: the list of its
//! valid taps and their source offsets relative to a base coordinate.
//! Interior coordinates share one class; each border coordinate (and each
//! stride residue in backward-data) has its own. All pixels of a
//! (row class, column class) pair use the same tap list, so they are fed to
//! the micro-kernel in tiles of `P` pixels through a table of per-pixel
//! source pointers (indirect convolution, as in XNNPACK), across rows and
//! images: a 3x3 output still fills whole tiles. Padding costs nothing: a
//! tap in the padding is simply absent from its class.
//!
//! The micro-kernel holds a `P x NV` block of vector accumulators
//! (`P` pixels, `NV * LANES` output channels): for each tap and input
//! channel it loads `NV` filter vectors and, for each pixel, broadcasts one
//! input value and issues `NV` FMAs. Bias and the activation are applied
//! in registers before the only store. The filter is packed once per call
//! into `[channel block][tap][c][NV*LANES]` with zero padding, so a channel
//! count that is not a multiple of the vector width costs a partial last
//! block, stored through a small buffer.
//!
//! | level | lanes | tile `P x NV` (by output channels) |
//! |---|---|---|
//! | AVX-512 | 16 | 16x1, 8x2, 8x3, 6x4 |
//! | AVX2+FMA | 8 | 12x1, 6x2 |
//! | portable (`wide`) | 8 | 6x1, 3x2 |
//!
//! # Backward-filter
//!
//! `dw[ky, kx, ci, co] = sum over pixels of x[pixel + tap, ci] * dy[pixel, co]`:
//! per tap, the pixels whose source is inside the input form a rectangle;
//! a micro-kernel holds `R` input channels by `NV` output-channel vectors
//! (times `G` interleaved pixel groups when `c_in` is 1, to hide FMA
//! latency) and reduces over the rectangle. The batch is split into FIXED
//! chunks of about [`FILTER_CHUNK_PIXELS`] output pixels, independent of
//! the thread count; each chunk writes its own partial `dw`, and the
//! partials are summed in chunk order, so the result is bit-identical for
//! any number of threads.
//!
//! # Pointwise (1x1, stride 1, no padding)
//!
//! A separable layer's pointwise half is a matrix product over the
//! `n * h * w` pixel rows, and each pass has a fast path for it
//! (`pointwise.rs`): no pointer table, so the tiles are as tall as the
//! registers allow (12x2, 8x3, 6x4 at AVX-512; forward and backward-data
//! give the general engine's bits), and a backward-filter that keeps the
//! chunks but walks each one in L2-sized pixel blocks with `MR` input
//! channels by `NV` output vectors in registers.
//!
//! # Files
//!
//! `axis.rs` groups the coordinates of one axis into tap classes,
//! `gather.rs` is the gather engine and its micro-kernels (forward and
//! backward-data), `filter.rs` the backward-filter reduction,
//! `pointwise.rs` the pointwise fast paths of all three; this file
//! packs the filter and sets each pass up. The bias gradient, shared by
//! every algorithm, is `conv/bias.rs`.

mod axis;
mod filter;
mod gather;
mod pointwise;
#[cfg(test)]
mod tests;

use super::ConvShape;
use crate::activation::Activation;
use crate::arch::{scratch_f32, FtzGuard, SendPtr, Slot, Token};
use crate::simd::SimdLevel;
use gather::{run_gather, Gather};

pub(crate) use filter::backward_filter;
pub use filter::FILTER_CHUNK_PIXELS;

/// `(lanes, vectors per full channel block)` for `channels` outputs at `level`.
pub(super) fn channel_blocking(level: SimdLevel, channels: usize) -> (usize, usize) {
    let (lanes, max_nv) = match level {
        SimdLevel::Avx512 => (16, 4),
        SimdLevel::Avx2 | SimdLevel::Portable => (8, 2),
    };
    (lanes, channels.div_ceil(lanes).min(max_nv))
}

/// Packs `taps * rows` filter rows into `[block][tap][row][ws]`, zero
/// padded: `get(tap, row, col)` reads the source filter, `cols` is the
/// packed (output) channel count.
fn pack_blocks(
    out: &mut [f32],
    taps: usize,
    rows: usize,
    cols: usize,
    ws: usize,
    get: impl Fn(usize, usize, usize) -> f32,
) {
    let blocks = cols.div_ceil(ws);
    debug_assert_eq!(out.len(), blocks * taps * rows * ws);
    for (blk, bout) in out.chunks_exact_mut(taps * rows * ws).enumerate() {
        for (tr, row) in bout.chunks_exact_mut(ws).enumerate() {
            let (t, r) = (tr / rows, tr % rows);
            for (j, v) in row.iter_mut().enumerate() {
                let c = blk * ws + j;
                *v = if c < cols { get(t, r, c) } else { 0.0 };
            }
        }
    }
}

/// Forward pass with the activation fused into the epilogue, on `token`'s
/// instruction set.
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
    let (lanes, nvm) = channel_blocking(token.level(), s.c_out);
    let ws = nvm * lanes;
    let blocks = s.c_out.div_ceil(ws);
    let taps = s.kh * s.kw;
    let bias_len = if bias.is_some() { blocks * ws } else { 0 };
    let mut buf = scratch_f32(Slot::Filter, bias_len + blocks * taps * s.c_in * ws);
    let (bpad, wpack) = buf.split_at_mut(bias_len);
    if let Some(b) = bias {
        bpad.fill(0.0);
        bpad[..s.c_out].copy_from_slice(b);
    }
    let (ci, co) = (s.c_in, s.c_out);
    pack_blocks(wpack, taps, ci, co, ws, |t, r, c| filter[(t * ci + r) * co + c]);
    let fwd = |stride: usize, dil: usize, pad: usize, size: usize| {
        move |o: usize, k: usize| {
            let i = (o * stride + k * dil) as isize - pad as isize;
            (0..size as isize).contains(&i).then_some(i)
        }
    };
    let g = Gather {
        token,
        n: s.n,
        src: input,
        src_h: s.h,
        src_w: s.w,
        src_c: s.c_in,
        dst: SendPtr(output.as_mut_ptr()),
        dst_h: s.out_h(),
        dst_w: s.out_w(),
        dst_c: s.c_out,
        kh: s.kh,
        kw: s.kw,
        wpack,
        bias: bias.map(|_| &*bpad),
        relu: activation == Activation::Relu,
        ws,
        nvm,
    };
    run_gather(&g, fwd(s.stride_h, s.dilation_h, s.pad_top, s.h), fwd(s.stride_w, s.dilation_w, s.pad_left, s.w));
}

/// Backward-data pass (overwrites `grad_input`): a gather over
/// `grad_output` with the filter transposed to `[ky, kx, co, ci]`.
pub(crate) fn backward_data(token: Token, s: &ConvShape, grad_output: &[f32], filter: &[f32], grad_input: &mut [f32]) {
    let _ftz = FtzGuard::new();
    let (lanes, nvm) = channel_blocking(token.level(), s.c_in);
    let ws = nvm * lanes;
    let blocks = s.c_in.div_ceil(ws);
    let taps = s.kh * s.kw;
    let mut buf = scratch_f32(Slot::Filter, blocks * taps * s.c_out * ws);
    let (ci, co) = (s.c_in, s.c_out);
    // Packed row (tap, co) holds w[tap, 0..ci, co].
    pack_blocks(&mut buf, taps, co, ci, ws, |t, r, c| filter[(t * ci + c) * co + r]);
    // Input position `o` receives tap `k` from output `q` when
    // o + pad - k*dil = q*stride with 0 <= q < out.
    let bwd = |stride: usize, dil: usize, pad: usize, out: usize| {
        move |o: usize, k: usize| {
            let t = (o + pad).checked_sub(k * dil)?;
            (t % stride == 0 && t / stride < out).then_some((t / stride) as isize)
        }
    };
    let g = Gather {
        token,
        n: s.n,
        src: grad_output,
        src_h: s.out_h(),
        src_w: s.out_w(),
        src_c: s.c_out,
        dst: SendPtr(grad_input.as_mut_ptr()),
        dst_h: s.h,
        dst_w: s.w,
        dst_c: s.c_in,
        kh: s.kh,
        kw: s.kw,
        wpack: &buf,
        bias: None,
        relu: false,
        ws,
        nvm,
    };
    let (ytap, xtap) =
        (bwd(s.stride_h, s.dilation_h, s.pad_top, s.out_h()), bwd(s.stride_w, s.dilation_w, s.pad_left, s.out_w()));
    run_gather(&g, ytap, xtap);
}
