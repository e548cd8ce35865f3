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
//! (times `G` interleaved pixel groups when `c_in` is small, to hide FMA
//! latency) and reduces over the rectangle. The batch is split into FIXED
//! chunks of about [`FILTER_CHUNK_PIXELS`] output pixels (code in
//! `direct_filter.rs`), independent of
//! the thread count; each chunk writes its own partial `dw`, and the
//! partials are summed in chunk order, so the result is bit-identical for
//! any number of threads.

// Register-tile loops index several fixed-size arrays in lockstep; indices
// read clearer there than zipped iterators.
#![allow(clippy::needless_range_loop)]

use super::{ConvAlgo, ConvPass, ConvShape};
use crate::activation::Activation;
use crate::arch::{scratch_f32, scratch_isize, FtzGuard, SendPtr, Slot};
#[cfg(target_arch = "x86_64")]
use crate::arch::{Avx2, Avx512};
use crate::arch::{Isa, Portable, Token, Vf32};
use crate::simd::SimdLevel;
use rayon::prelude::*;

pub use super::direct_filter::FILTER_CHUNK_PIXELS;
pub(crate) use super::direct_filter::{backward_bias, backward_filter};

/// `Ok` for every validated shape and pass: direct is fully general.
pub(crate) fn supports(_algo: ConvAlgo, _shape: &ConvShape, _pass: ConvPass) -> std::result::Result<(), String> {
    Ok(())
}

/// Output pixels per rayon task in the gather engine (times the tile size
/// `P`). Fixed, so the split never depends on the pool; results of the
/// gather passes do not depend on it anyway (each output is computed by
/// exactly one task, always in the same order).
const TILES_PER_TASK: usize = 16;

// ---------------------------------------------------------------------------
// Axis classes
// ---------------------------------------------------------------------------

/// The taps of one axis, grouped into classes of output coordinates that
/// see the same taps at the same relative source offsets.
struct Axis<'a> {
    /// Source coordinate that offsets are relative to, per output coordinate.
    base: &'a [isize],
    /// Output coordinates grouped by class.
    members: &'a [isize],
    /// `members[start[c] .. start[c+1]]` are class `c`'s coordinates.
    start: &'a [isize],
    /// Tap count per class.
    ntaps: &'a [isize],
    /// Per class, `k` slots: the tap index.
    tap_k: &'a [isize],
    /// Per class, `k` slots: source offset relative to `base`.
    tap_rel: &'a [isize],
    /// Window size along this axis.
    k: usize,
    /// Number of classes.
    classes: usize,
}

/// isize slots [`build_axis`] needs for `out` coordinates and window `k`.
fn axis_len(out: usize, k: usize) -> usize {
    out * (5 + 2 * k) + 1
}

/// Groups the `out` output coordinates of one axis into classes; `tap(o, k)`
/// is the source coordinate of output `o` and tap `k`, if it is inside.
fn build_axis(buf: &mut [isize], out: usize, k: usize, tap: impl Fn(usize, usize) -> Option<isize>) -> Axis<'_> {
    let (class_of, rest) = buf.split_at_mut(out);
    let (base, rest) = rest.split_at_mut(out);
    let (members, rest) = rest.split_at_mut(out);
    let (start, rest) = rest.split_at_mut(out + 1);
    let (ntaps, rest) = rest.split_at_mut(out);
    let (tap_k, tap_rel) = rest.split_at_mut(out * k);
    let tap_rel = &mut tap_rel[..out * k];
    let mut classes = 0usize;
    for o in 0..out {
        // This coordinate's taps, written into the next free class slot.
        let (mut m, mut b) = (0usize, 0isize);
        for kk in 0..k {
            if let Some(i) = tap(o, kk) {
                if m == 0 {
                    b = i;
                }
                tap_k[classes * k + m] = kk as isize;
                tap_rel[classes * k + m] = i - b;
                m += 1;
            }
        }
        base[o] = b;
        let same = |c: usize| {
            ntaps[c] == m as isize
                && tap_k[c * k..c * k + m] == tap_k[classes * k..classes * k + m]
                && tap_rel[c * k..c * k + m] == tap_rel[classes * k..classes * k + m]
        };
        class_of[o] = match (0..classes).find(|&c| same(c)) {
            Some(c) => c as isize,
            None => {
                ntaps[classes] = m as isize;
                classes += 1;
                (classes - 1) as isize
            }
        };
    }
    // Group the coordinates by class, in increasing order within a class
    // (one walk per class: there are few classes, at most `out`).
    start[0] = 0;
    let mut pos = 0usize;
    for c in 0..classes {
        for o in 0..out {
            if class_of[o] == c as isize {
                members[pos] = o as isize;
                pos += 1;
            }
        }
        start[c + 1] = pos as isize;
    }
    Axis { base, members, start, ntaps, tap_k, tap_rel, k, classes }
}

// ---------------------------------------------------------------------------
// The gather engine (forward and backward-data)
// ---------------------------------------------------------------------------

/// One gather convolution: `dst[n, oy, ox, 0..dst_c] = bias + sum over the
/// taps of the pixel's class pair of src[n, base + rel, 0..src_c] . wpack`.
/// What a pass (forward, backward-data) hands to [`run_gather`].
struct Gather<'a> {
    token: Token,
    n: usize,
    src: &'a [f32],
    src_h: usize,
    src_w: usize,
    src_c: usize,
    /// `n * dst_h * dst_w * dst_c` writable floats, written only by this gather.
    dst: SendPtr<f32>,
    dst_h: usize,
    dst_w: usize,
    dst_c: usize,
    /// Window size.
    kh: usize,
    kw: usize,
    /// `[block][ky][kx][src_c][ws]`, zero padded past `dst_c`.
    wpack: &'a [f32],
    /// Bias padded to whole blocks, if any.
    bias: Option<&'a [f32]>,
    relu: bool,
    /// Width of a packed channel block (`nvm * lanes`).
    ws: usize,
    /// Vectors per full channel block.
    nvm: usize,
}

/// How [`run_gather`] splits one [`Gather`]: the axis classes and the tasks.
struct Plan<'a> {
    y: Axis<'a>,
    x: Axis<'a>,
    /// Output pixels per task.
    task_pixels: usize,
    /// `pair_tasks[p] .. pair_tasks[p+1]` are the tasks of class pair `p`.
    pair_tasks: &'a [isize],
}

/// Tile height `P` (pixels) for `nv` vectors per channel block at `level`:
/// as many accumulators as the register file holds with room for the
/// filter vectors and one broadcast (32 zmm, 16 ymm, 16 xmm for `wide`'s
/// two-register f32x8 on the SSE2 baseline).
fn tile_pixels(level: SimdLevel, nvm: usize) -> usize {
    match (level, nvm) {
        (SimdLevel::Avx512, 1) => 16,
        (SimdLevel::Avx512, 2) => 8,
        (SimdLevel::Avx512, 3) => 8,
        (SimdLevel::Avx512, _) => 6,
        (SimdLevel::Avx2, 1) => 12,
        (SimdLevel::Avx2, _) => 6,
        (SimdLevel::Portable, 1) => 6,
        (SimdLevel::Portable, _) => 3,
    }
}

/// `(lanes, vectors per full channel block)` for `channels` outputs at `level`.
pub(super) fn channel_blocking(level: SimdLevel, channels: usize) -> (usize, usize) {
    let (lanes, max_nv) = match level {
        SimdLevel::Avx512 => (16, 4),
        SimdLevel::Avx2 | SimdLevel::Portable => (8, 2),
    };
    (lanes, channels.div_ceil(lanes).min(max_nv))
}

/// Runs a gather convolution over every output pixel; `ytap(o, k)` /
/// `xtap(o, k)` give the source coordinate of output `o` and tap `k`, if
/// it is inside the source.
fn run_gather(g: &Gather, ytap: impl Fn(usize, usize) -> Option<isize>, xtap: impl Fn(usize, usize) -> Option<isize>) {
    let (kh, kw) = (g.kh, g.kw);
    let mut table = scratch_isize(Slot::Table, axis_len(g.dst_h, kh) + axis_len(g.dst_w, kw));
    let (ybuf, xbuf) = table.split_at_mut(axis_len(g.dst_h, kh));
    let y = build_axis(ybuf, g.dst_h, kh, ytap);
    let x = build_axis(xbuf, g.dst_w, kw, xtap);
    let p = tile_pixels(g.token.level(), g.nvm);
    let task_pixels = p * TILES_PER_TASK;
    let pairs = y.classes * x.classes;
    let mut pair_tasks = scratch_isize(Slot::Partial, pairs + 1);
    pair_tasks[0] = 0;
    for cy in 0..y.classes {
        for cx in 0..x.classes {
            let count = g.n * (y.start[cy + 1] - y.start[cy]) as usize * (x.start[cx + 1] - x.start[cx]) as usize;
            let i = cy * x.classes + cx;
            pair_tasks[i + 1] = pair_tasks[i] + count.div_ceil(task_pixels) as isize;
        }
    }
    let tasks = pair_tasks[pairs] as usize;
    let plan = Plan { y, x, task_pixels, pair_tasks: &pair_tasks };
    (0..tasks).into_par_iter().for_each(|t| {
        let _ftz = FtzGuard::new();
        match g.token {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the token proves AVX-512F/AVX2/FMA; `g` describes in-bounds buffers.
            Token::Avx512(isa) => unsafe { gather_task_avx512(isa, g, &plan, t) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the token proves AVX2/FMA; `g` describes in-bounds buffers.
            Token::Avx2(isa) => unsafe { gather_task_avx2(isa, g, &plan, t) },
            Token::Portable(isa) => gather_task_portable(isa, g, &plan, t),
        }
    });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn gather_task_avx512(isa: Avx512, g: &Gather, plan: &Plan, t: usize) {
    // SAFETY: `g` describes in-bounds buffers (see gather_task).
    unsafe {
        match g.nvm {
            1 => gather_task::<_, 16>(isa, g, plan, t),
            2 => gather_task::<_, 8>(isa, g, plan, t),
            3 => gather_task::<_, 8>(isa, g, plan, t),
            _ => gather_task::<_, 6>(isa, g, plan, t),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gather_task_avx2(isa: Avx2, g: &Gather, plan: &Plan, t: usize) {
    // SAFETY: `g` describes in-bounds buffers (see gather_task).
    unsafe {
        match g.nvm {
            1 => gather_task::<_, 12>(isa, g, plan, t),
            _ => gather_task::<_, 6>(isa, g, plan, t),
        }
    }
}

fn gather_task_portable(isa: Portable, g: &Gather, plan: &Plan, t: usize) {
    // SAFETY: `g` describes in-bounds buffers (see gather_task).
    unsafe {
        match g.nvm {
            1 => gather_task::<_, 6>(isa, g, plan, t),
            _ => gather_task::<_, 3>(isa, g, plan, t),
        }
    }
}

/// Runs task `t` of `g`: up to `task_pixels` pixels of one class pair.
///
/// # Safety
///
/// `g.dst` points to `n * dst_h * dst_w * dst_c` writable floats that no
/// other task writes at the same pixels (tasks own disjoint pixel ranges);
/// every source offset of a class is inside `src` for the pixels of that
/// class (the axis classes only hold taps whose source is inside).
#[inline(always)]
unsafe fn gather_task<S: Isa, const P: usize>(isa: S, g: &Gather, plan: &Plan, t: usize) {
    let pair = plan.pair_tasks.partition_point(|&s| s as usize <= t) - 1;
    let (cy, cx) = (pair / plan.x.classes, pair % plan.x.classes);
    let chunk = t - plan.pair_tasks[pair] as usize;
    let ym = &plan.y.members[plan.y.start[cy] as usize..plan.y.start[cy + 1] as usize];
    let xm = &plan.x.members[plan.x.start[cx] as usize..plan.x.start[cx + 1] as usize];
    let per_img = ym.len() * xm.len();
    let begin = chunk * plan.task_pixels;
    let end = (begin + plan.task_pixels).min(g.n * per_img);

    // The reduction list of this class pair, flattened over (tap, channel):
    // source offsets and packed-filter offsets. One flat loop keeps the
    // accumulators in registers (a nested channel loop makes LLVM spill
    // them around it, which costs most of the time when c_in is small).
    let (nty, ntx) = (plan.y.ntaps[cy] as usize, plan.x.ntaps[cx] as usize);
    let red = nty * ntx * g.src_c;
    let mut offs = scratch_isize(Slot::Column, 2 * red);
    let (xo, wo) = offs.split_at_mut(red);
    let mut r = 0;
    for a in 0..nty {
        let (ky, ry) = (plan.y.tap_k[cy * plan.y.k + a], plan.y.tap_rel[cy * plan.y.k + a]);
        for b in 0..ntx {
            let (kx, rx) = (plan.x.tap_k[cx * plan.x.k + b], plan.x.tap_rel[cx * plan.x.k + b]);
            let x0 = (ry * g.src_w as isize + rx) * g.src_c as isize;
            let w0 = (ky * plan.x.k as isize + kx) * (g.src_c * g.ws) as isize;
            for c in 0..g.src_c as isize {
                xo[r] = x0 + c;
                wo[r] = w0 + c * g.ws as isize;
                r += 1;
            }
        }
    }
    let taps = plan.y.k * plan.x.k;
    let block_len = taps * g.src_c * g.ws;
    let blocks = g.dst_c.div_ceil(g.ws);

    let mut n = begin / per_img;
    let mut yi = begin % per_img / xm.len();
    let mut xi = begin % xm.len();
    let mut idx = begin;
    let src = g.src.as_ptr();
    // Pixel pointers of every tile of the task first, then the channel
    // blocks outermost: one packed filter block (up to K * 64 floats) stays
    // in L2 while all the task's tiles use it.
    let mut sps = [[src; P]; TILES_PER_TASK];
    let mut dps = [[g.dst.get(); P]; TILES_PER_TASK];
    let mut tiles = 0;
    // Row offsets (source and destination, in floats) change only when
    // the row does; a pixel then adds its column offsets.
    let row_offsets = |n: usize, yi: usize| {
        let oy = ym[yi] as usize;
        let sy = ((n * g.src_h) as isize + plan.y.base[oy]) * (g.src_w * g.src_c) as isize;
        let dy = ((n * g.dst_h + oy) * g.dst_w * g.dst_c) as isize;
        (sy, dy)
    };
    let (mut sy, mut dy) = row_offsets(n, yi);
    while idx < end {
        let cnt = P.min(end - idx);
        let (sp, dp) = (&mut sps[tiles], &mut dps[tiles]);
        for p in 0..cnt {
            let ox = xm[xi] as usize;
            // Base source pixel (may lie outside the image when the class has
            // no taps; then it is never dereferenced), and the destination pixel.
            sp[p] = src.wrapping_offset(sy + plan.x.base[ox] * g.src_c as isize);
            dp[p] = g.dst.get().wrapping_offset(dy + (ox * g.dst_c) as isize);
            xi += 1;
            if xi == xm.len() {
                xi = 0;
                yi += 1;
                if yi == ym.len() {
                    yi = 0;
                    n += 1;
                }
                if n < g.n {
                    (sy, dy) = row_offsets(n, yi);
                }
            }
        }
        // Pad a partial tile by repeating its last pixel: the same values
        // are computed and stored twice.
        for p in cnt..P {
            sp[p] = sp[cnt - 1];
            dp[p] = dp[cnt - 1];
        }
        idx += cnt;
        tiles += 1;
    }
    for blk in 0..blocks {
        let c0 = blk * g.ws;
        let nvalid = g.ws.min(g.dst_c - c0);
        let w = g.wpack[blk * block_len..].as_ptr();
        let bias = g.bias.map_or(std::ptr::null(), |b| b[c0..].as_ptr());
        let nv = nvalid.div_ceil(S::LANES);
        if P.is_multiple_of(4) && nv == 2 && xo.len() == 9 && S::LANES == 16 {
            // Nine reduction steps and two vectors of outputs (the first
            // layer: one input channel, 3x3, 17-32 filters): the whole
            // filter block fits in 18 zmm registers, loaded once per task.
            // SAFETY: as below.
            unsafe {
                let (sps, dps) = (&sps[..tiles], &dps[..tiles]);
                gather_tiles_stationary::<S, P>(isa, sps, dps, c0, xo, wo, w, bias, nvalid, g.relu)
            };
            continue;
        }
        for (sp, dp) in sps.iter().zip(&dps).take(tiles) {
            // SAFETY: per the function contract; the packed block holds
            // `taps * src_c` rows of `ws >= nv * LANES` floats.
            unsafe {
                match nv {
                    1 => gather_tile::<S, P, 1>(isa, sp, dp, c0, xo, wo, w, bias, nvalid, g.relu),
                    2 => gather_tile::<S, P, 2>(isa, sp, dp, c0, xo, wo, w, bias, nvalid, g.relu),
                    3 => gather_tile::<S, P, 3>(isa, sp, dp, c0, xo, wo, w, bias, nvalid, g.relu),
                    _ => gather_tile::<S, P, 4>(isa, sp, dp, c0, xo, wo, w, bias, nvalid, g.relu),
                }
            }
        }
    }
}

/// Weights-stationary micro-kernel for exactly nine reduction steps and two
/// output vectors: the 18 filter vectors stay in registers for all tiles,
/// pixels go four at a time (8 accumulators), so each pixel costs nine
/// broadcasts and 18 FMAs and no filter loads.
///
/// # Safety
///
/// As [`gather_tile`] with `NV = 2` and `xo.len() == wo.len() == 9`, for
/// every tile of `sps`/`dps`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn gather_tiles_stationary<S: Isa, const P: usize>(
    isa: S,
    sps: &[[*const f32; P]],
    dps: &[[*mut f32; P]],
    c0: usize,
    xo: &[isize],
    wo: &[isize],
    w: *const f32,
    bias: *const f32,
    nvalid: usize,
    relu: bool,
) {
    debug_assert!(xo.len() == 9 && wo.len() == 9 && P.is_multiple_of(4) && nvalid <= 2 * S::LANES);
    let mut wr = [[isa.zero(); 2]; 9];
    let mut off = [0isize; 9];
    for r in 0..9 {
        off[r] = xo[r];
        for j in 0..2 {
            // SAFETY: packed row r holds 2 * LANES readable floats.
            wr[r][j] = unsafe { isa.load(w.offset(wo[r]).add(j * S::LANES)) };
        }
    }
    let mut init = [isa.zero(); 2];
    if !bias.is_null() {
        for j in 0..2 {
            // SAFETY: bias readable for 2 * LANES floats (padded).
            init[j] = unsafe { isa.load(bias.add(j * S::LANES)) };
        }
    }
    let zero = isa.zero();
    for (sp, dp) in sps.iter().zip(dps) {
        for q in (0..P).step_by(4) {
            let mut acc = [init; 4];
            for r in 0..9 {
                for p in 0..4 {
                    // SAFETY: sp[q+p] + off[r] is inside the source (contract).
                    let b = isa.splat(unsafe { *sp[q + p].wrapping_offset(off[r]) });
                    acc[p][0] = b.mul_add(wr[r][0], acc[p][0]);
                    acc[p][1] = b.mul_add(wr[r][1], acc[p][1]);
                }
            }
            for p in 0..4 {
                // SAFETY: dp[q+p] + c0 + j writable for j < nvalid (contract).
                let d = unsafe { dp[q + p].add(c0) };
                for j in 0..2 {
                    let v = if relu { acc[p][j].max(zero) } else { acc[p][j] };
                    let lo = j * S::LANES;
                    if lo + S::LANES <= nvalid {
                        // SAFETY: a whole vector inside the valid channels.
                        unsafe { v.store(d.add(lo)) };
                    } else if lo < nvalid {
                        let mut tmp = [0f32; 16];
                        // SAFETY: tmp holds 16 >= LANES floats; lo + i < nvalid.
                        unsafe {
                            v.store(tmp.as_mut_ptr());
                            std::ptr::copy_nonoverlapping(tmp.as_ptr(), d.add(lo), nvalid - lo);
                        }
                    }
                }
            }
        }
    }
}

/// The micro-kernel: `P` pixels by `NV` vectors of output channels.
///
/// # Safety
///
/// For every pixel `p` and reduction step `r`, `src[p] + xo[r]` is
/// readable and `w + wo[r] + j` is readable for `j < NV * LANES`; `bias` is null or readable for `NV * LANES` floats;
/// `dst[p] + c0 + j` is writable for `j < nvalid <= NV * LANES`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn gather_tile<S: Isa, const P: usize, const NV: usize>(
    isa: S,
    src: &[*const f32; P],
    dst: &[*mut f32; P],
    c0: usize,
    xo: &[isize],
    wo: &[isize],
    w: *const f32,
    bias: *const f32,
    nvalid: usize,
    relu: bool,
) {
    debug_assert!(nvalid <= NV * S::LANES && xo.len() == wo.len());
    let mut acc = [[isa.zero(); NV]; P];
    if !bias.is_null() {
        for j in 0..NV {
            // SAFETY: bias readable for NV * LANES floats (padded).
            let b = unsafe { isa.load(bias.add(j * S::LANES)) };
            for a in acc.iter_mut() {
                a[j] = b;
            }
        }
    }
    for r in 0..xo.len() {
        let x_off = xo[r];
        let mut wv = [isa.zero(); NV];
        for j in 0..NV {
            // SAFETY: packed row r holds NV*LANES readable floats.
            wv[j] = unsafe { isa.load(w.offset(wo[r]).add(j * S::LANES)) };
        }
        for p in 0..P {
            // SAFETY: src[p] + x_off is inside the source (contract).
            let b = isa.splat(unsafe { *src[p].wrapping_offset(x_off) });
            for j in 0..NV {
                acc[p][j] = b.mul_add(wv[j], acc[p][j]);
            }
        }
    }
    let zero = isa.zero();
    for p in 0..P {
        // SAFETY: dst[p] + c0 + j writable for j < nvalid (contract).
        let d = unsafe { dst[p].add(c0) };
        for j in 0..NV {
            let v = if relu { acc[p][j].max(zero) } else { acc[p][j] };
            let lo = j * S::LANES;
            if lo + S::LANES <= nvalid {
                // SAFETY: a whole vector inside the valid channels.
                unsafe { v.store(d.add(lo)) };
            } else if lo < nvalid {
                let mut tmp = [0f32; 16];
                // SAFETY: tmp holds 16 >= LANES floats.
                unsafe { v.store(tmp.as_mut_ptr()) };
                for (i, &t) in tmp[..nvalid - lo].iter().enumerate() {
                    // SAFETY: lo + i < nvalid.
                    unsafe { *d.add(lo + i) = t };
                }
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::direct_filter::backward_filter;
    use crate::conv::{reference, Padding};

    fn shapes() -> Vec<ConvShape> {
        let b = |n, h, w, ci, co, k| ConvShape::new(n, h, w, ci, co, k, k).unwrap();
        vec![
            // The chapter's layers at a small batch.
            b(2, 28, 28, 1, 32, 3),
            // One channel, 3x3, 17-32 filters: the weights-stationary kernel,
            // with a partial second vector; `same` adds the border classes.
            b(2, 9, 8, 1, 20, 3).with_padding(Padding::Same).unwrap(),
            b(2, 13, 13, 32, 64, 3),
            b(3, 5, 5, 64, 64, 3),
            // Odd channel counts, windows, strides, dilation, padding.
            b(2, 6, 7, 3, 1, 3),
            b(1, 7, 6, 5, 3, 3).with_padding(Padding::Same).unwrap(),
            b(2, 7, 6, 3, 17, 5),
            b(1, 8, 9, 6, 33, 3).with_stride(2, 2).unwrap().with_padding(Padding::Same).unwrap(),
            b(1, 9, 8, 2, 20, 3).with_stride(2, 3).unwrap(),
            b(2, 9, 9, 3, 3, 3).with_dilation(2, 2).unwrap().with_padding(Padding::Same).unwrap(),
            b(2, 6, 6, 5, 70, 1),
            b(1, 4, 5, 2, 3, 2).with_padding(Padding::Explicit { top: 3, bottom: 0, left: 1, right: 4 }).unwrap(),
            b(1, 11, 10, 7, 48, 5).with_stride(3, 2).unwrap().with_padding(Padding::Same).unwrap(),
        ]
    }

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
    fn every_pass_matches_reference_at_every_level() {
        for level in SimdLevel::available() {
            let token = Token::new(level).unwrap();
            for s in shapes() {
                let x = data(s.input_len(), 1);
                let w = data(s.filter_len(), 2);
                let b = data(s.c_out, 3);
                let dy = data(s.output_len(), 4);
                let what = level.name();
                for relu in [false, true] {
                    let mut want = vec![0.0; s.output_len()];
                    reference::forward(&s, &x, &w, Some(&b), &mut want);
                    if relu {
                        want.iter_mut().for_each(|v| *v = v.max(0.0));
                    }
                    let act = if relu { Activation::Relu } else { Activation::Linear };
                    let mut got = vec![f32::NAN; s.output_len()];
                    forward(token, &s, &x, &w, Some(&b), act, &mut got);
                    close(what, &s, &got, &want, s.kh * s.kw * s.c_in);
                }
                let mut want = vec![0.0; s.output_len()];
                reference::forward(&s, &x, &w, None, &mut want);
                let mut got = vec![f32::NAN; s.output_len()];
                forward(token, &s, &x, &w, None, Activation::Linear, &mut got);
                close(what, &s, &got, &want, s.kh * s.kw * s.c_in);

                let mut want = vec![0.0; s.input_len()];
                reference::backward_data(&s, &dy, &w, &mut want);
                let mut got = vec![f32::NAN; s.input_len()];
                backward_data(token, &s, &dy, &w, &mut got);
                close(what, &s, &got, &want, s.kh * s.kw * s.c_out);

                let mut want = vec![0.0; s.filter_len()];
                reference::backward_filter(&s, &x, &dy, &mut want);
                let mut got = vec![f32::NAN; s.filter_len()];
                backward_filter(token, &s, &x, &dy, &mut got);
                close(what, &s, &got, &want, s.n * s.out_h() * s.out_w());
            }
        }
    }

    #[test]
    fn bias_gradient_matches_reference() {
        for s in [shapes()[0].with_batch(7).unwrap(), shapes()[5]] {
            let dy = data(s.output_len(), 5);
            let mut want = vec![0.0; s.c_out];
            reference::backward_bias(&s, &dy, &mut want);
            let mut got = vec![f32::NAN; s.c_out];
            backward_bias(&s, &dy, &mut got);
            close("bias", &s, &got, &want, s.n * s.out_h() * s.out_w());
        }
    }

    #[test]
    fn results_are_bit_identical_for_1_2_3_threads() {
        let s = ConvShape::new(9, 12, 12, 5, 24, 3, 3).unwrap().with_padding(Padding::Same).unwrap();
        let x = data(s.input_len(), 6);
        let w = data(s.filter_len(), 7);
        let dy = data(s.output_len(), 8);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let lvl = Token::new(SimdLevel::detect()).unwrap();
                let mut y = vec![f32::NAN; s.output_len()];
                forward(lvl, &s, &x, &w, None, Activation::Linear, &mut y);
                let mut dx = vec![f32::NAN; s.input_len()];
                backward_data(lvl, &s, &dy, &w, &mut dx);
                let mut dw = vec![f32::NAN; s.filter_len()];
                backward_filter(lvl, &s, &x, &dy, &mut dw);
                let mut db = vec![f32::NAN; s.c_out];
                backward_bias(&s, &dy, &mut db);
                let mut dw2 = vec![f32::NAN; s.filter_len()];
                crate::conv::im2col::backward_filter(lvl, &s, &x, &dy, &mut dw2);
                (y, dx, dw, db, dw2)
            })
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
    }

    #[test]
    fn axis_classes_group_interior_and_border() {
        let mut buf = vec![0isize; axis_len(5, 3)];
        // 5 outputs, window 3, `same` padding 1 on a size-5 axis.
        let ax = build_axis(&mut buf, 5, 3, |o, k| {
            let i = o as isize + k as isize - 1;
            (0..5).contains(&i).then_some(i)
        });
        assert_eq!(ax.classes, 3); // left border, interior, right border
        assert_eq!(&ax.members[..5], &[0, 1, 2, 3, 4]);
        assert_eq!(&ax.start[..4], &[0, 1, 4, 5]);
        assert_eq!(&ax.ntaps[..3], &[2, 3, 2]);
    }
}
