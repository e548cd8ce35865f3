//! Winograd convolution F(2x2, 3x3) and F(4x4, 3x3) (Lavin & Gray 2015,
//! "Fast Algorithms for Convolutional Neural Networks", arXiv:1509.09308).
//!
//! **What it computes.** 3x3 windows, stride 1, no dilation, any padding
//! (valid, same, explicit, asymmetric): the same `y = act(conv(x, w) + b)` as
//! [`super::reference`], NHWC input and output, HWIO filter at the edges.
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
//!    AVX2 micro-kernels, matrixmultiply on the portable path);
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
//! A^T` per tile, `dU[e] = V[e]^T dM[e]` as one GEMM per tile element
//! accumulated over fixed chunks of tiles, then `dg = G^T dU G` (see the
//! `backward_filter` submodule).
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
// The AVX-512 intrinsics these modules use are stable since Rust 1.89, the
// workspace's rust-version.
mod gemm;
#[cfg(test)]
mod tests;
mod transforms;

use super::{ConvAlgo, ConvPass, ConvShape};
use crate::activation::Activation;
use crate::arch::{FtzGuard, SendPtr};
use rayon::prelude::*;
use std::cell::Cell;
use std::thread::LocalKey;
use transforms::{filter_tile, input_tile_f2, input_tile_f4, output_tile_f2, output_tile_f4};
use transforms::{G_F2, G_F4};

#[cfg(target_arch = "x86_64")]
use crate::arch::{Avx2, Avx512};
use crate::arch::{Isa, Scalar, Token};

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
pub(crate) fn supports(_algo: ConvAlgo, s: &ConvShape, _pass: ConvPass) -> Result<(), String> {
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
    c_in: usize,
    c_out: usize,
    pad_top: isize,
    pad_left: isize,
    out_h: usize,
    out_w: usize,
}

impl Problem {
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

    /// Tiles per block: `V + M` within [`BLOCK_BYTES`], at least
    /// [`MIN_BLOCKS`] blocks when there are enough tiles.
    fn tiles_per_block(&self, ldm: usize) -> usize {
        let per_tile = self.variant.elems() * (self.c_in + ldm) * 4;
        let by_cache = (BLOCK_BYTES / per_tile).max(1);
        let by_balance = self.tiles().div_ceil(MIN_BLOCKS).max(1);
        let tiles = by_cache.min(by_balance);
        // Whole 12-row micro-kernel tiles where that costs little balance.
        if tiles >= 24 {
            tiles - tiles % 12
        } else {
            tiles
        }
    }
}

thread_local! {
    /// The transformed (and, for backward-data, rotated) filter of the call in progress.
    static FILTER_SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// `V`, `M`, a zero row and a sink row of one block.
    static BLOCK_SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` on `len` floats of a thread-local, growth-only buffer: repeated
/// calls with the same shape allocate nothing. The buffer is taken out of the
/// cell while `f` runs, so a re-entrant call on the same thread (rayon work
/// stealing into another convolution) gets a fresh buffer instead of a panic.
fn with_scratch<R>(key: &'static LocalKey<Cell<Vec<f32>>>, len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = key.take();
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let r = f(&mut buf[..len]);
    key.set(buf);
    r
}

/// Padded row length of `M` and of each `U[e]` panel set for `token`.
fn padded_c_out(token: Token, c_out: usize) -> usize {
    let nr = gemm::panel_width(token, c_out);
    c_out.div_ceil(nr) * nr
}

/// Forward pass with the activation fused into the epilogue, on `token`'s
/// instruction set (one token per call, so the filter packing and the
/// micro-kernels always agree).
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
    let problem = Problem {
        variant: Variant::of(algo),
        n: s.n,
        in_h: s.h,
        in_w: s.w,
        c_in: s.c_in,
        c_out: s.c_out,
        // A validated shape's buffers fit in usize bytes, so its paddings are < isize::MAX.
        pad_top: s.pad_top as isize,
        pad_left: s.pad_left as isize,
        out_h: s.out_h(),
        out_w: s.out_w(),
    };
    let packed_len = problem.variant.elems() * s.c_in * padded_c_out(token, s.c_out);
    with_scratch(&FILTER_SCRATCH, packed_len, |packed| {
        pack_filter(problem.variant, token, filter, s.c_in, s.c_out, packed);
        run(&problem, token, input, packed, bias, activation == Activation::Relu, output);
    });
}

/// Backward-data pass (overwrites `grad_input`): a Winograd forward of
/// `grad_output` with the rotated, channel-swapped filter.
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
        pad_top: 2 - s.pad_top as isize,
        pad_left: 2 - s.pad_left as isize,
        out_h: s.h,
        out_w: s.w,
    };
    let rotated_len = 9 * s.c_in * s.c_out;
    let packed_len = problem.variant.elems() * problem.c_in * padded_c_out(token, problem.c_out);
    with_scratch(&FILTER_SCRATCH, rotated_len + packed_len, |buf| {
        let (rotated, packed) = buf.split_at_mut(rotated_len);
        rotate_and_swap(filter, s.c_in, s.c_out, rotated);
        pack_filter(problem.variant, token, rotated, problem.c_in, problem.c_out, packed);
        run(&problem, token, grad_output, packed, None, false, grad_input);
    });
}

/// Backward-filter pass (overwrites `grad_filter`): the gradient of the
/// element-wise stage, see [`backward_filter`](self::backward_filter).
pub(crate) fn backward_filter(
    token: Token,
    algo: ConvAlgo,
    s: &ConvShape,
    input: &[f32],
    grad_output: &[f32],
    grad_filter: &mut [f32],
) {
    let problem = Problem {
        variant: Variant::of(algo),
        n: s.n,
        in_h: s.h,
        in_w: s.w,
        c_in: s.c_in,
        c_out: s.c_out,
        pad_top: s.pad_top as isize,
        pad_left: s.pad_left as isize,
        out_h: s.out_h(),
        out_w: s.out_w(),
    };
    backward_filter::backward_filter(&problem, token, input, grad_output, grad_filter);
}

/// HWIO `[3][3][c_in][c_out]` -> rotated by 180 degrees with channels swapped,
/// `rotated[ky][kx][co][ci] = filter[2 - ky][2 - kx][ci][co]`.
fn rotate_and_swap(filter: &[f32], c_in: usize, c_out: usize, rotated: &mut [f32]) {
    for tap in 0..9 {
        let src = &filter[(8 - tap) * c_in * c_out..][..c_in * c_out];
        let dst = &mut rotated[tap * c_in * c_out..][..c_in * c_out];
        for (ci, row) in src.chunks_exact(c_out).enumerate() {
            for (co, &w) in row.iter().enumerate() {
                dst[co * c_in + ci] = w;
            }
        }
    }
}

/// Filter transform of the whole HWIO filter into `packed` (`[e][panel][c_in][nr]`).
///
/// Parallel over fixed groups of input channels; for each channel and each
/// `S::LANES` output channels the 9 taps are loaded once and `G g G^T` is
/// applied separably in registers (`G` along ky, then along kx), then the
/// `t*t` results are stored to their panel rows.
fn pack_filter(variant: Variant, token: Token, filter: &[f32], c_in: usize, c_out: usize, packed: &mut [f32]) {
    const CHANNELS_PER_TASK: usize = 8;
    let ldm = padded_c_out(token, c_out);
    debug_assert_eq!(packed.len(), variant.elems() * c_in * ldm);
    debug_assert_eq!(filter.len(), 9 * c_in * c_out);
    let args = FilterArgs {
        f4: variant == Variant::F4,
        filter: filter.as_ptr(),
        c_in,
        c_out,
        nr: gemm::panel_width(token, c_out),
        ldm,
        packed: SendPtr(packed.as_mut_ptr()),
    };
    (0..c_in.div_ceil(CHANNELS_PER_TASK)).into_par_iter().for_each(|task| {
        let _ftz = FtzGuard::new();
        let channels = task * CHANNELS_PER_TASK..c_in.min((task + 1) * CHANNELS_PER_TASK);
        // Soundness of every arm below: this task alone writes the rows of `packed` that
        // belong to its input channels (rows (e, panel, ci) for ci in
        // `channels`), which lie inside `packed` (t*t * c_in * ldm floats,
        // asserted above), and reads the filter (9 * c_in * c_out, asserted);
        // each SIMD arm's token proves its instruction set.
        match token {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as noted above; the token proves AVX-512F, AVX2 and FMA.
            Token::Avx512(isa) => unsafe { filter_rows_avx512(isa, &args, channels) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as noted above; the token proves AVX2 and FMA.
            Token::Avx2(isa) => unsafe { filter_rows_avx2(isa, &args, channels) },
            // SAFETY: as noted above (the portable code needs no CPU feature).
            Token::Portable(isa) => unsafe { filter_rows(isa, &args, channels) },
        }
    });
}

#[derive(Clone, Copy)]
struct FilterArgs {
    f4: bool,
    filter: *const f32,
    c_in: usize,
    c_out: usize,
    nr: usize,
    ldm: usize,
    packed: SendPtr<f32>,
}

// SAFETY: `filter` is only read; `packed` is written at disjoint rows (see pack_filter).
unsafe impl Send for FilterArgs {}
// SAFETY: as above.
unsafe impl Sync for FilterArgs {}

/// Writes `U[e][panel][ci][..]` for every tile element and each `ci` in
/// `channels`, zeroing the padding columns of the last panel.
///
/// # Safety
/// As described in `pack_filter`; the token `isa` proves the instruction set, and
/// `S::LANES` divides `nr` (or `nr == c_out`), so a vector never straddles panels.
#[inline(always)]
unsafe fn filter_rows<S: Isa>(isa: S, a: &FilterArgs, channels: core::ops::Range<usize>) {
    let (c_in, c_out, nr) = (a.c_in, a.c_out, a.nr);
    let t2 = if a.f4 { 36 } else { 16 };
    let estride = c_in * a.ldm;
    for ci in channels {
        // Element 0's row for output channel `co` (panel co / nr, column co % nr).
        // SAFETY: (p*c_in + ci)*nr + j < c_in * ldm for co < ldm.
        let row0 = |co: usize| unsafe { a.packed.get().add(((co / nr) * c_in + ci) * nr + co % nr) };
        let mut co = 0;
        // SAFETY: co + LANES <= c_out, so the filter loads are in
        // bounds and the stores stay within one panel row of every element.
        unsafe {
            while co + S::LANES <= c_out {
                if a.f4 {
                    filter_tile::<S, true>(isa, a.filter, ci, c_in, c_out, co, row0(co), estride);
                } else {
                    filter_tile::<S, false>(isa, a.filter, ci, c_in, c_out, co, row0(co), estride);
                }
                co += S::LANES;
            }
            for co in co..c_out {
                if a.f4 {
                    filter_tile::<Scalar, true>(isa.scalar(), a.filter, ci, c_in, c_out, co, row0(co), estride);
                } else {
                    filter_tile::<Scalar, false>(isa.scalar(), a.filter, ci, c_in, c_out, co, row0(co), estride);
                }
            }
        }
        for co in c_out..a.ldm {
            for e in 0..t2 {
                // SAFETY: padding column co < ldm of the last panel, row (e, ci), inside `packed`.
                unsafe { *row0(co).add(e * estride) = 0.0 };
            }
        }
    }
}

/// # Safety
/// As [`filter_rows`], on a CPU with AVX-512F, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn filter_rows_avx512(isa: Avx512, a: &FilterArgs, channels: core::ops::Range<usize>) {
    // SAFETY: forwarded contract; 16 divides the 32-wide panels.
    unsafe { filter_rows(isa, a, channels) }
}

/// # Safety
/// As [`filter_rows`], on a CPU with AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn filter_rows_avx2(isa: Avx2, a: &FilterArgs, channels: core::ops::Range<usize>) {
    // SAFETY: forwarded contract; 8 divides the 16-wide panels.
    unsafe { filter_rows(isa, a, channels) }
}

/// Runs `problem` block by block: input transform, GEMMs, output transform.
fn run(p: &Problem, token: Token, input: &[f32], packed: &[f32], bias: Option<&[f32]>, relu: bool, output: &mut [f32]) {
    debug_assert_eq!(input.len(), p.n * p.in_h * p.in_w * p.c_in);
    debug_assert_eq!(output.len(), p.n * p.out_h * p.out_w * p.c_out);
    let ldm = padded_c_out(token, p.c_out);
    let t2 = p.variant.elems();
    let total = p.tiles();
    let per_block = p.tiles_per_block(ldm);
    let blocks = total.div_ceil(per_block);
    let out = SendPtr(output.as_mut_ptr());
    (0..blocks).into_par_iter().for_each(|block| {
        let _ftz = FtzGuard::new();
        let first = block * per_block;
        let count = per_block.min(total - first);
        let (v_len, m_len) = (t2 * count * p.c_in, t2 * count * ldm);
        let zeros_len = p.c_in.max(p.c_out);
        with_scratch(&BLOCK_SCRATCH, v_len + m_len + zeros_len + p.c_out, |scratch| {
            let (v, rest) = scratch.split_at_mut(v_len);
            let (m, rest) = rest.split_at_mut(m_len);
            let (zeros, sink) = rest.split_at_mut(zeros_len);
            zeros.fill(0.0);
            input_block(p, token, input, first, count, zeros, v);
            for e in 0..t2 {
                let a = &v[e * count * p.c_in..][..count * p.c_in];
                let b = &packed[e * p.c_in * ldm..][..p.c_in * ldm];
                let c = &mut m[e * count * ldm..][..count * ldm];
                gemm::gemm(token, count, p.c_in, p.c_out, a, b, c);
            }
            let bias = bias.unwrap_or(&zeros[..p.c_out]);
            assert!(m.len() >= t2 * count * ldm && bias.len() >= p.c_out && sink.len() >= p.c_out);
            let args =
                OutputArgs { m: m.as_ptr(), ldm, bias: bias.as_ptr(), relu, out: out.get(), sink: sink.as_mut_ptr() };
            // SAFETY: `m`, `bias` and `sink` are long enough (asserted), `sink`
            // is this task's own scratch, and the output pixels of this
            // block's tiles are written by this task only (blocks partition
            // the tiles, and `output` has the problem's NHWC size).
            unsafe { output_block(p, token, &args, first, count) };
        });
    });
}

/// Input transform of tiles `first .. first + count` into `v` (`[e][count][c_in]`).
fn input_block(p: &Problem, token: Token, input: &[f32], first: usize, count: usize, zeros: &[f32], v: &mut [f32]) {
    assert!(zeros.len() >= p.c_in && v.len() >= p.variant.elems() * count * p.c_in);
    assert_eq!(input.len(), p.n * p.in_h * p.in_w * p.c_in);
    let args = InputArgs { input: input.as_ptr(), zeros: zeros.as_ptr(), v: v.as_mut_ptr(), estride: count * p.c_in };
    // SAFETY: `input` is the problem's input and `zeros` holds c_in zeros
    // (asserted); `v` holds t*t rows of `count * c_in` floats (asserted), so
    // tile b's element e row at b*c_in + e*count*c_in is inside it, and `v`
    // is borrowed mutably here, so no other thread touches it.
    unsafe { input_block_raw(p, token, &args, first, count) }
}

/// Input transform of tiles `first .. first + count`: tile `b`'s element `e`
/// (its `c_in` channels) goes to `args.v + e * args.estride + b * c_in`.
///
/// # Safety
/// `args.input` is the problem's NHWC input, `args.zeros` holds at least
/// `c_in` zeros, and every `v + e * estride + b * c_in` (e < t*t, b < count)
/// is valid for `c_in` writes that no other thread touches concurrently.
unsafe fn input_block_raw(p: &Problem, token: Token, args: &InputArgs, first: usize, count: usize) {
    // Soundness of every arm below: the tile gather only forms pointers to pixels inside
    // the input (bounds-checked per pixel) or into `zeros` (>= c_in floats);
    // writes stay inside the rows the caller guarantees.
    match token {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as noted above; the token proves AVX-512F, AVX2 and FMA.
        Token::Avx512(isa) => unsafe { input_block_avx512(isa, p, args, first, count) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as noted above; the token proves AVX2 and FMA.
        Token::Avx2(isa) => unsafe { input_block_avx2(isa, p, args, first, count) },
        // SAFETY: as noted above (the portable code needs no CPU feature).
        Token::Portable(isa) => unsafe { input_block_impl(isa, p, args, first, count) },
    }
}

/// Where the input transform reads and writes (see [`input_block_raw`]).
#[derive(Clone, Copy)]
pub(super) struct InputArgs {
    /// The problem's NHWC input.
    pub(super) input: *const f32,
    /// At least `c_in` zeros (pixels outside the image).
    pub(super) zeros: *const f32,
    /// Tile 0's element-0 row of `V`.
    pub(super) v: *mut f32,
    /// Distance between the rows of consecutive tile elements.
    pub(super) estride: usize,
}

/// # Safety
/// As [`input_block_impl`], on a CPU with AVX-512F, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn input_block_avx512(isa: Avx512, p: &Problem, args: &InputArgs, first: usize, count: usize) {
    // SAFETY: forwarded contract; AVX-512F is enabled here.
    unsafe { input_block_impl(isa, p, args, first, count) }
}

/// # Safety
/// As [`input_block_impl`], on a CPU with AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn input_block_avx2(isa: Avx2, p: &Problem, args: &InputArgs, first: usize, count: usize) {
    // SAFETY: forwarded contract; AVX2 is enabled here.
    unsafe { input_block_impl(isa, p, args, first, count) }
}

/// Gathers each tile's `t x t` pixel pointers (the zero row outside the
/// image) and transforms `S::LANES` channels at a time, then the remainder
/// one channel at a time.
///
/// # Safety
/// As [`input_block_raw`]; the token `isa` proves the instruction set.
#[inline(always)]
unsafe fn input_block_impl<S: Isa>(isa: S, p: &Problem, args: &InputArgs, first: usize, count: usize) {
    let (m, t, c_in) = (p.variant.m(), p.variant.t(), p.c_in);
    let InputArgs { input, zeros, v, estride } = *args;
    let mut src = [zeros; 36];
    for b in 0..count {
        let (img, ty, tx) = p.tile_coords(first + b);
        let y0 = (ty * m) as isize - p.pad_top;
        let x0 = (tx * m) as isize - p.pad_left;
        for i in 0..t {
            let iy = y0 + i as isize;
            for j in 0..t {
                let ix = x0 + j as isize;
                let inside = iy >= 0 && (iy as usize) < p.in_h && ix >= 0 && (ix as usize) < p.in_w;
                src[i * t + j] = if inside {
                    // SAFETY: (img, iy, ix) is a pixel of the input, so its row of c_in floats is in bounds.
                    unsafe { input.add(((img * p.in_h + iy as usize) * p.in_w + ix as usize) * c_in) }
                } else {
                    zeros
                };
            }
        }
        // SAFETY: tile b's V rows start at b*c_in, inside v.
        let dst = unsafe { v.add(b * c_in) };
        // SAFETY: every src row holds c_in floats and every
        // dst + e*estride row c_in floats, and c + LANES <= c_in in each loop.
        unsafe {
            match p.variant {
                Variant::F2 => {
                    let src: &[*const f32; 16] = src.first_chunk().unwrap_or_else(|| unreachable!());
                    let mut c = 0;
                    while c + S::LANES <= c_in {
                        input_tile_f2::<S>(isa, src, c, dst, estride);
                        c += S::LANES;
                    }
                    for c in c..c_in {
                        input_tile_f2::<Scalar>(isa.scalar(), src, c, dst, estride);
                    }
                }
                Variant::F4 => {
                    let mut c = 0;
                    while c + S::LANES <= c_in {
                        input_tile_f4::<S>(isa, &src, c, dst, estride);
                        c += S::LANES;
                    }
                    for c in c..c_in {
                        input_tile_f4::<Scalar>(isa.scalar(), &src, c, dst, estride);
                    }
                }
            }
        }
    }
}

/// Output transform of tiles `first .. first + count` from `args.m`
/// (`[e][count][ldm]`) into the output, with bias and activation.
///
/// # Safety
/// `args.m` holds `t*t*count*ldm` floats, `args.bias` and `args.sink` `c_out`
/// each (the sink written by this thread only), `args.out` the problem's
/// NHWC output, whose pixels of these tiles no other thread writes.
unsafe fn output_block(p: &Problem, token: Token, args: &OutputArgs, first: usize, count: usize) {
    // Soundness of every arm below: reads stay inside `m` and `bias`; writes
    // go to output pixels inside the image (each written by this block only)
    // or to `sink` (c_out floats): the caller's contract.
    match token {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as noted above; the token proves AVX-512F, AVX2 and FMA.
        Token::Avx512(isa) => unsafe { output_block_avx512(isa, p, args, first, count) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as noted above; the token proves AVX2 and FMA.
        Token::Avx2(isa) => unsafe { output_block_avx2(isa, p, args, first, count) },
        // SAFETY: as noted above (the portable code needs no CPU feature).
        Token::Portable(isa) => unsafe { output_block_impl(isa, p, args, first, count) },
    }
}

/// Where the output transform reads and writes (see [`output_block`]).
struct OutputArgs {
    m: *const f32,
    ldm: usize,
    bias: *const f32,
    relu: bool,
    out: *mut f32,
    sink: *mut f32,
}

/// # Safety
/// As [`output_block_impl`], on a CPU with AVX-512F, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn output_block_avx512(isa: Avx512, p: &Problem, args: &OutputArgs, first: usize, count: usize) {
    // SAFETY: forwarded contract; AVX-512F is enabled here.
    unsafe { output_block_impl(isa, p, args, first, count) }
}

/// # Safety
/// As [`output_block_impl`], on a CPU with AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn output_block_avx2(isa: Avx2, p: &Problem, args: &OutputArgs, first: usize, count: usize) {
    // SAFETY: forwarded contract; AVX2 is enabled here.
    unsafe { output_block_impl(isa, p, args, first, count) }
}

/// Points each tile's `m x m` output pixels at the output (or the sink row
/// past the bottom/right edge) and transforms `S::LANES` channels at a time.
///
/// # Safety
/// `args.m` holds `t*t*count*ldm` floats, `args.bias` and `args.sink` `c_out`,
/// `args.out` the problem's NHWC output with no other task writing these
/// tiles' pixels; the token `isa` proves the instruction set.
#[inline(always)]
unsafe fn output_block_impl<S: Isa>(isa: S, p: &Problem, args: &OutputArgs, first: usize, count: usize) {
    let (m, c_out) = (p.variant.m(), p.c_out);
    let estride = count * args.ldm;
    let mut dst = [args.sink; 16];
    for b in 0..count {
        let (img, ty, tx) = p.tile_coords(first + b);
        for i in 0..m {
            let oy = ty * m + i;
            for j in 0..m {
                let ox = tx * m + j;
                dst[i * m + j] = if oy < p.out_h && ox < p.out_w {
                    // SAFETY: (img, oy, ox) is an output pixel, its c_out floats are in bounds.
                    unsafe { args.out.add(((img * p.out_h + oy) * p.out_w + ox) * c_out) }
                } else {
                    args.sink
                };
            }
        }
        // SAFETY: tile b's M rows start at b*ldm inside m.
        let src = unsafe { args.m.add(b * args.ldm) };
        // SAFETY: src + e*estride + c and dst[k] + c are valid for
        // WIDTH floats while c + LANES <= c_out <= ldm; bias likewise.
        unsafe {
            match p.variant {
                Variant::F2 => {
                    let dst: &[*mut f32; 4] = dst.first_chunk().unwrap_or_else(|| unreachable!());
                    let mut c = 0;
                    while c + S::LANES <= c_out {
                        output_tile_f2::<S>(isa, src, estride, c, dst, args.bias, args.relu);
                        c += S::LANES;
                    }
                    for c in c..c_out {
                        output_tile_f2::<Scalar>(isa.scalar(), src, estride, c, dst, args.bias, args.relu);
                    }
                }
                Variant::F4 => {
                    let mut c = 0;
                    while c + S::LANES <= c_out {
                        output_tile_f4::<S>(isa, src, estride, c, &dst, args.bias, args.relu);
                        c += S::LANES;
                    }
                    for c in c..c_out {
                        output_tile_f4::<Scalar>(isa.scalar(), src, estride, c, &dst, args.bias, args.relu);
                    }
                }
            }
        }
    }
}
