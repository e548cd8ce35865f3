//! Winograd convolution F(2x2, 3x3) and F(4x4, 3x3) (Lavin & Gray 2015,
//! "Fast Algorithms for Convolutional Neural Networks", arXiv:1509.09308).
//!
//! **What it computes.** 3x3 windows, stride 1, no dilation, any padding
//! (valid, same, explicit, asymmetric): the same `y = act(conv(x, w) + b)` as
//! [`super::reference`], NHWC input and output, HWIO filter at the edges.
//! Forward and backward-data also run grouped shapes (groups dividing both
//! channel counts) in the same pass: the transforms cover all channels, the
//! GEMMs are per group (block-diagonal, see `Problem::groups`).
//!
//! **How.** The output is cut into `m x m` tiles (`m` = 2 or 4); tile `(ty, tx)`
//! reads the `(m+2) x (m+2)` input patch at `(ty*m - pad_top, tx*m - pad_left)`,
//! zero outside the image, so neighbouring patches overlap by 2 and partial
//! tiles at the bottom/right edges are computed whole and clipped on store.
//! Per call:
//!
//! 1. filter transform `U = G g G^T`, once, into a thread-local buffer laid
//!    out `[tile element][c_in][c_out]` in the column panels the GEMM streams;
//! 2. tiles in fixed blocks (`BLOCK_BYTES` bounds one), one rayon task per block:
//!    input transform `V = B^T d B` (SIMD over channels) into
//!    `[tile element][tile][c_in]`;
//! 3. the element-wise stage as `t*t` GEMMs (16 for F2, 36 for F4)
//!    `M[e] = V[e] * U[e]`, `[tiles x c_in] * [c_in x c_out]` (own AVX-512 /
//!    AVX2 micro-kernels, our packed GEMM of `crate::gemm` on the portable path);
//! 4. output transform `Y = A^T M A` with bias and activation fused into the
//!    store.
//!
//! F(4x4,3x3) does 36 multiplies per 16 outputs where direct convolution does
//! 144 (4x fewer), F(2x2,3x3) 16 per 4 (2.25x fewer); the price is rounding
//! error that grows with the interpolation points (F4's ±2 points amplify it
//! more than F2's ±1): see `docs/ALGORITHMS.md` for the derivation and the
//! measured error, and the tests below for the tolerances.
//!
//! **Backward-data** is another Winograd forward: `grad_input` is the
//! correlation of `grad_output` with the 180-degree rotated filter, input and
//! output channels swapped, with padding `2 - pad_top` on top and `2 -
//! pad_left` on the left (negative means crop; the tile gather treats every
//! out-of-range pixel as zero, so the bottom/right need no explicit padding).
//!
//! **Backward-filter** is the gradient of the element-wise stage: `dM = A dY
//! A^T` per tile, `dU[e] = sum V[e]^T dM[e]` accumulated by a register-tiled
//! outer product over L2-sized chunks of tiles, per fixed group of tiles,
//! then `dg = G^T dU G` (see the `backward_filter` submodule).
//!
//! **Inference with a 2x2 max pool** after the convolution: [`pooled`] fuses
//! the pool (and bias and ReLU) into the output transform, bit-identical to
//! this forward followed by the max pool, and never writes the conv map.
//!
//! **Threads and determinism.** Blocks are a fixed partition of the tiles
//! that does not depend on the thread count, and every output pixel is
//! computed by exactly one task with a fixed order of operations, so results
//! are bit-identical for any number of threads.
//!
//! **Denormals.** Entry points and every rayon task hold a
//! `FtzGuard` (flush-to-zero / denormals-are-zero while the
//! kernel runs, MXCSR restored after).
//!
//! **SIMD.** One instruction-set token per call (`crate::arch::Token`); the
//! transforms run on its vectors (zmm for AVX-512, ymm for AVX2,
//! `wide::f32x8` portable), with scalar lanes for channel remainders.

mod backward_filter;
mod gemm;
mod pack;
pub mod pooled;
#[cfg(test)]
mod tests;
mod tiles;
mod transforms;

use super::{ConvAlgo, ConvShape};
use crate::activation::Activation;
use crate::arch::{scratch_f32, scratch_f32_task, FtzGuard, SendPtr, Slot, Token};
use pack::{pack_filter, rotate_and_swap};
use rayon::prelude::*;
use tiles::{input_block, output_block, OutputArgs};
use transforms::{G_F2, G_F4};

/// Bytes of transformed input `V` plus element-wise products `M` for one
/// block of tiles (one rayon task).
///
/// Within a block, the input transform writes `V`, the 16/36 GEMMs read it
/// back tile element by tile element and write `M`, and the output transform
/// reads `M`; `V + M` at 2 MiB stays in the core's private L2 (2 MiB per core
/// on the Xeon where `docs/BENCHMARKS.md` was measured) between those stages.
/// The other side of the trade is the filter: every block streams all of
/// `U` (36 x `c_in` x `c_out` floats, 9.4 MB for 256 -> 256, from L3), so
/// the bigger the block, the more tiles share that traffic. At 2 MiB a
/// 256 -> 256 F(4x4) block holds 24 tiles (two full 12-row micro-kernel
/// tiles): about 12 flops per byte of `U` read, within what L3 delivers to a
/// core. Block sizes from 0.5 to 16 MiB measured within noise of each other
/// on the (shared, loaded) benchmark machine, so the value rests on that
/// cache arithmetic; on a 1 MiB-L2 core (Zen 4) 1 MiB would be the choice.
pub(crate) const BLOCK_BYTES: usize = 2 << 20;

/// [`BLOCK_BYTES`] for grouped problems (training forward and
/// backward-data): the filter of all groups is small (`groups * t*t * cig *
/// cog` floats, 590 KB for 56x56x128 in 4 groups), so a block whose `V + M`
/// leaves room for it in half the L2 keeps all three stages in cache: 384
/// KiB, 10 tiles of 128 channels with F(4x4). Measured on that layer
/// (batch 8, one thread, CPU ms per forward call, five alternated runs, load
/// average 10-12 on two cores, so rough): 2 MiB blocks 9.97 ms median,
/// 512 KiB 7.05, 256 KiB 6.45 (7.7 in a second sitting), in that second
/// sitting 384 KiB 6.8 and 128 KiB 8.9 (GEMMs of 3 tiles).
const GROUPED_BLOCK_BYTES: usize = 384 << 10;

/// At least this many blocks when the problem has enough tiles, so two or
/// more threads can balance small layers (a fixed number, not the thread
/// count: the partition must not depend on the pool).
const MIN_BLOCKS: usize = 8;

/// Which Winograd variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    /// F(2x2, 3x3): 4x4 input tiles, 2x2 outputs.
    F2,
    /// F(4x4, 3x3): 6x6 input tiles, 4x4 outputs.
    F4,
}

impl Variant {
    fn of(algo: ConvAlgo) -> Variant {
        match algo {
            ConvAlgo::WinogradF2 => Variant::F2,
            _ => Variant::F4,
        }
    }

    /// Output tile side `m`.
    fn m(self) -> usize {
        match self {
            Variant::F2 => 2,
            Variant::F4 => 4,
        }
    }

    /// Input tile side `t = m + 2`.
    fn t(self) -> usize {
        self.m() + 2
    }

    /// Tile elements `t * t` (GEMMs per block).
    fn elems(self) -> usize {
        self.t() * self.t()
    }

    fn g(self) -> &'static [[f64; 3]] {
        match self {
            Variant::F2 => &G_F2,
            Variant::F4 => &G_F4,
        }
    }
}

/// `Ok` when `algo` can run `pass` on `shape`, else the reason.
/// Every pass (forward, backward-data, backward-filter) runs on the same shapes.
pub(crate) fn supports(s: &ConvShape) -> Result<(), String> {
    if s.kh != 3 || s.kw != 3 || s.stride_h != 1 || s.stride_w != 1 || s.dilation_h != 1 || s.dilation_w != 1 {
        return Err(format!(
            "Winograd needs a 3x3 window with stride 1 and no dilation (got window {}x{}, stride {}x{}, dilation {}x{})",
            s.kh, s.kw, s.stride_h, s.stride_w, s.dilation_h, s.dilation_w
        ));
    }
    Ok(())
}

/// A stride-1 3x3 correlation as the driver runs it: forward directly, and
/// backward-data on the derived shape. Padding is signed (negative = crop);
/// input pixels outside `[0, in_h) x [0, in_w)` read as zero.
#[derive(Clone, Copy, Debug)]
struct Problem {
    variant: Variant,
    n: usize,
    in_h: usize,
    in_w: usize,
    /// Input channels (all groups).
    c_in: usize,
    /// Output channels (all groups).
    c_out: usize,
    /// Channel groups: group `g` maps input channels `g * c_in / groups ..`
    /// to output channels `g * c_out / groups ..` (1 = dense). The input
    /// and output transforms run over all channels at once; only the GEMMs
    /// are per group (block-diagonal).
    groups: usize,
    pad_top: isize,
    pad_left: isize,
    out_h: usize,
    out_w: usize,
}

impl Problem {
    /// Input channels per group (the GEMMs' `k`).
    fn cig(&self) -> usize {
        self.c_in / self.groups
    }

    /// Output channels per group (the GEMMs' `n`).
    fn cog(&self) -> usize {
        self.c_out / self.groups
    }

    /// Row length of `M` for `token`: one padded column block per group
    /// (group `g`'s products at columns `g * ldm_g ..`, `ldm_g` =
    /// [`padded_c_out`] of `cog`).
    fn ldm(&self, token: Token) -> usize {
        self.groups * padded_c_out(token, self.cog())
    }

    /// Floats of the packed filter: per group, per tile element, `cig` rows
    /// of the group's padded output channels.
    fn packed_len(&self, token: Token) -> usize {
        self.variant.elems() * self.cig() * self.ldm(token)
    }

    fn tiles_h(&self) -> usize {
        self.out_h.div_ceil(self.variant.m())
    }

    fn tiles_w(&self) -> usize {
        self.out_w.div_ceil(self.variant.m())
    }

    fn tiles(&self) -> usize {
        self.n * self.tiles_h() * self.tiles_w()
    }

    /// `(image, tile row, tile column)` of flat tile index `tile`.
    fn tile_coords(&self, tile: usize) -> (usize, usize, usize) {
        let per_image = self.tiles_h() * self.tiles_w();
        let (img, rem) = (tile / per_image, tile % per_image);
        (img, rem / self.tiles_w(), rem % self.tiles_w())
    }

    /// The training driver's budget for `V + M` of one block:
    /// [`BLOCK_BYTES`] dense, [`GROUPED_BLOCK_BYTES`] grouped.
    fn block_bytes(&self) -> usize {
        if self.groups > 1 {
            GROUPED_BLOCK_BYTES
        } else {
            BLOCK_BYTES
        }
    }

    /// Tiles per block: `V + M` within `block_bytes`, at least
    /// `min_blocks` blocks when there are enough tiles, whole 12-row
    /// micro-kernel tiles where that costs little balance. (Training uses
    /// [`BLOCK_BYTES`] and [`MIN_BLOCKS`], inference its own, see [`pooled`].)
    fn tiles_per_block(&self, ldm: usize, block_bytes: usize, min_blocks: usize) -> usize {
        let per_tile = self.variant.elems() * (self.c_in + ldm) * 4;
        let by_cache = (block_bytes / per_tile).max(1);
        let by_balance = self.tiles().div_ceil(min_blocks).max(1);
        let tiles = by_cache.min(by_balance);
        if tiles >= 24 {
            tiles - tiles % 12
        } else {
            tiles
        }
    }
}

/// Padded row length of `M` and of each `U[e]` panel set for `token`.
fn padded_c_out(token: Token, c_out: usize) -> usize {
    let nr = gemm::panel_width(token, c_out);
    c_out.div_ceil(nr) * nr
}

/// The forward problem of `s` (all groups) on `algo`'s variant.
fn forward_problem(algo: ConvAlgo, s: &ConvShape) -> Problem {
    Problem {
        variant: Variant::of(algo),
        n: s.n,
        in_h: s.h,
        in_w: s.w,
        c_in: s.c_in,
        c_out: s.c_out,
        groups: s.groups,
        // A validated shape's buffers fit in usize bytes, so its paddings are < isize::MAX.
        pad_top: s.pad_top as isize,
        pad_left: s.pad_left as isize,
        out_h: s.out_h(),
        out_w: s.out_w(),
    }
}

/// Filter transform of every group into `packed` ([`Problem::packed_len`]
/// floats, group `g`'s `[e][cig][ldm_g]` at `g * t*t * cig * ldm_g`).
///
/// `filter` is HWIO `[3][3][cig][c_out]` of the forward problem whose
/// groups `p` runs; with `rotate`, `p` is that problem's backward-data (its
/// `cig` the forward's `cog` and vice versa) and each group's filter is
/// rotated by 180 degrees with its channels swapped before the transform.
/// A dense filter (one group, no rotation) is transformed in place; the
/// groups are copied out to a per-call scratch first.
fn pack_groups(p: &Problem, token: Token, filter: &[f32], rotate: bool, packed: &mut [f32]) {
    let (cig, cog) = (p.cig(), p.cog());
    let group_len = p.variant.elems() * cig * padded_c_out(token, cog);
    debug_assert_eq!(packed.len(), p.groups * group_len);
    if p.groups == 1 && !rotate {
        pack_filter(p.variant, token, filter, cig, cog, packed);
        return;
    }
    // The forward problem's per-group channels: rows of `filter` and columns per group.
    let (rows, cols) = if rotate { (cog, cig) } else { (cig, cog) };
    let width = p.groups * cols;
    let taps = 9 * rows * cols;
    let mut buf = scratch_f32(Slot::Table, 2 * taps);
    let (w, rotated) = buf.split_at_mut(taps);
    for (g, out) in packed.chunks_exact_mut(group_len).enumerate() {
        for (dst, src) in w.chunks_exact_mut(cols).zip(filter.chunks_exact(width)) {
            dst.copy_from_slice(&src[g * cols..][..cols]);
        }
        if rotate {
            rotate_and_swap(w, rows, cols, rotated);
            pack_filter(p.variant, token, rotated, cig, cog, out);
        } else {
            pack_filter(p.variant, token, w, cig, cog, out);
        }
    }
}

/// Forward pass with the activation fused into the epilogue, on `token`'s
/// instruction set (one token per call, so the filter packing and the
/// micro-kernels always agree). Grouped shapes run every group in one pass
/// over the tiles (see [`Problem::groups`]).
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
    let problem = forward_problem(algo, s);
    let mut packed = scratch_f32(Slot::Filter, problem.packed_len(token));
    pack_groups(&problem, token, filter, false, &mut packed);
    let per_block = problem.tiles_per_block(problem.ldm(token), problem.block_bytes(), MIN_BLOCKS);
    let pass = Pass { p: &problem, token, input, packed: &packed, per_block, bias };
    run(&pass, activation == Activation::Relu, output);
}

/// Backward-data pass (overwrites `grad_input`): a Winograd forward of
/// `grad_output` with the rotated, channel-swapped filter (per group).
pub(crate) fn backward_data(
    token: Token,
    algo: ConvAlgo,
    s: &ConvShape,
    grad_output: &[f32],
    filter: &[f32],
    grad_input: &mut [f32],
) {
    let _ftz = FtzGuard::new();
    // grad_input[iy] = sum_ky grad_output[iy + pad_top - ky] * w[ky]
    //               = sum_k' grad_output[iy + k' - (2 - pad_top)] * w[2 - k'].
    let problem = Problem {
        variant: Variant::of(algo),
        n: s.n,
        in_h: s.out_h(),
        in_w: s.out_w(),
        c_in: s.c_out,
        c_out: s.c_in,
        groups: s.groups,
        pad_top: 2 - s.pad_top as isize,
        pad_left: 2 - s.pad_left as isize,
        out_h: s.h,
        out_w: s.w,
    };
    let mut packed = scratch_f32(Slot::Filter, problem.packed_len(token));
    pack_groups(&problem, token, filter, true, &mut packed);
    let per_block = problem.tiles_per_block(problem.ldm(token), problem.block_bytes(), MIN_BLOCKS);
    run(&Pass { p: &problem, token, input: grad_output, packed: &packed, per_block, bias: None }, false, grad_input);
}

/// Backward-filter pass (overwrites `grad_filter`) of a dense shape: the
/// gradient of the element-wise stage, see
/// [`backward_filter`](self::backward_filter).
pub(crate) fn backward_filter(
    token: Token,
    algo: ConvAlgo,
    s: &ConvShape,
    input: &[f32],
    grad_output: &[f32],
    grad_filter: &mut [f32],
) {
    debug_assert_eq!(s.groups, 1);
    let problem = forward_problem(algo, s);
    backward_filter::backward_filter(&problem, token, input, grad_output, grad_filter);
}

/// One block's products, handed to the driver's epilogue.
struct Block<'a> {
    /// The block's first tile.
    first: usize,
    /// Its tiles.
    count: usize,
    /// `M`, `[e][count][ldm]`.
    m: &'a [f32],
    /// Row length of `M` ([`Problem::ldm`]).
    ldm: usize,
    /// `c_out` biases (zeros without a bias).
    bias: &'a [f32],
    /// `c_out` floats of this task's own scratch, for pixels past the edges.
    sink: &'a mut [f32],
}

impl Block<'_> {
    /// The raw operands of an output transform of this block into `out`,
    /// after checking the lengths its safety contract needs (`M` of the
    /// block's tiles, `c_out` of bias and sink).
    fn output_args(&mut self, p: &Problem, relu: bool, out: SendPtr<f32>) -> OutputArgs {
        let t2 = p.variant.elems();
        assert!(self.m.len() >= t2 * self.count * self.ldm && self.bias.len() >= p.c_out && self.sink.len() >= p.c_out);
        OutputArgs {
            m: self.m.as_ptr(),
            ldm: self.ldm,
            bias: self.bias.as_ptr(),
            relu,
            out: out.get(),
            sink: self.sink.as_mut_ptr(),
        }
    }
}

/// One call of the block driver: the problem, its instruction set, its
/// input and packed filter ([`pack_groups`]'s), the tiles per block and the
/// bias.
struct Pass<'a> {
    p: &'a Problem,
    token: Token,
    input: &'a [f32],
    packed: &'a [f32],
    per_block: usize,
    bias: Option<&'a [f32]>,
}

/// The block driver: cuts the tiles into blocks of `per_block` (a fixed
/// partition, whatever the thread count), one rayon task per block, and per
/// block runs the input transform of all `c_in` channels into `V`, the
/// `t*t * groups` GEMMs `M[e][.., group g] = V[e][.., group g] * U[g][e]`,
/// then `epilogue` on `M` (the output transform, plain or pooled).
///
/// The epilogue may only write output pixels of its block's tiles (blocks
/// run concurrently).
fn run_blocks(pass: &Pass, epilogue: impl Fn(Block) + Sync) {
    let Pass { p, token, input, packed, per_block, bias } = *pass;
    assert_eq!(input.len(), p.n * p.in_h * p.in_w * p.c_in);
    let (cig, cog, groups) = (p.cig(), p.cog(), p.groups);
    let ldm_g = padded_c_out(token, cog);
    let ldm = groups * ldm_g;
    assert!(packed.len() >= p.packed_len(token) && bias.is_none_or(|b| b.len() >= p.c_out));
    let t2 = p.variant.elems();
    let total = p.tiles();
    let blocks = total.div_ceil(per_block);
    (0..blocks).into_par_iter().for_each(|block| {
        let _ftz = FtzGuard::new();
        let first = block * per_block;
        let count = per_block.min(total - first);
        let (v_len, m_len) = (t2 * count * p.c_in, t2 * count * ldm);
        let zeros_len = p.c_in.max(p.c_out);
        // The last block may be short; size for a full one on first touch.
        let full = per_block.min(total);
        let full_len = t2 * full * (p.c_in + ldm) + zeros_len + p.c_out;
        let mut scratch = scratch_f32_task(Slot::Tiles, v_len + m_len + zeros_len + p.c_out, full_len);
        let (v, rest) = scratch.split_at_mut(v_len);
        let (m, rest) = rest.split_at_mut(m_len);
        let (zeros, sink) = rest.split_at_mut(zeros_len);
        zeros.fill(0.0);
        input_block(p, token, input, first, count, zeros, v);
        let strides = gemm::Strides { lda: p.c_in, ldc: ldm };
        for e in 0..t2 {
            for g in 0..groups {
                let a = &v[e * count * p.c_in + g * cig..];
                let b = &packed[(g * t2 + e) * cig * ldm_g..][..cig * ldm_g];
                let c = &mut m[e * count * ldm + g * ldm_g..];
                gemm::gemm(token, count, cig, cog, a, b, c, strides);
            }
        }
        let bias = bias.unwrap_or(&zeros[..p.c_out]);
        epilogue(Block { first, count, m, ldm, bias, sink });
    });
}

/// Runs `pass` block by block with the plain output transform (bias and
/// activation fused) into `output`, NHWC of the problem's size.
fn run(pass: &Pass, relu: bool, output: &mut [f32]) {
    let (p, token) = (pass.p, pass.token);
    assert_eq!(output.len(), p.n * p.out_h * p.out_w * p.c_out);
    let out = SendPtr(output.as_mut_ptr());
    run_blocks(pass, |mut blk| {
        let args = blk.output_args(p, relu, out);
        // SAFETY: `output_args` checked the lengths of `m`, `bias` and
        // `sink`; `sink` is this task's own scratch, and the output pixels
        // of this block's tiles are written by this task only (blocks
        // partition the tiles, and `output` has the problem's NHWC size,
        // asserted).
        unsafe { output_block(p, token, &args, blk.first, blk.count) };
    });
}
