//! The gather engine of `direct` forward and backward-data: tiles of `P`
//! pixels of one class pair fed to a `P x NV` register-tile micro-kernel
//! through per-pixel source pointers (see the `direct` module docs).

// Register-tile loops index several fixed-size arrays in lockstep; indices
// read clearer there than zipped iterators.
#![allow(clippy::needless_range_loop)]

use super::axis::{axis_len, build_axis, Axis};
use crate::arch::{scratch_isize, FtzGuard, SendPtr, Slot};
#[cfg(target_arch = "x86_64")]
use crate::arch::{Avx2, Avx512};
use crate::arch::{Isa, Portable, Token, Vf32};
use crate::simd::SimdLevel;
use rayon::prelude::*;

/// Output pixels per rayon task in the gather engine (times the tile size
/// `P`). Fixed, so the split never depends on the pool; results of the
/// gather passes do not depend on it anyway (each output is computed by
/// exactly one task, always in the same order).
const TILES_PER_TASK: usize = 16;

// ---------------------------------------------------------------------------
// The gather engine (forward and backward-data)
// ---------------------------------------------------------------------------

/// One gather convolution: `dst[n, oy, ox, 0..dst_c] = bias + sum over the
/// taps of the pixel's class pair of src[n, base + rel, 0..src_c] . wpack`.
/// What a pass (forward, backward-data) hands to [`run_gather`].
pub(super) struct Gather<'a> {
    pub(super) token: Token,
    pub(super) n: usize,
    pub(super) src: &'a [f32],
    pub(super) src_h: usize,
    pub(super) src_w: usize,
    pub(super) src_c: usize,
    /// `n * dst_h * dst_w * dst_c` writable floats, written only by this gather.
    pub(super) dst: SendPtr<f32>,
    pub(super) dst_h: usize,
    pub(super) dst_w: usize,
    pub(super) dst_c: usize,
    /// Window size.
    pub(super) kh: usize,
    pub(super) kw: usize,
    /// `[block][ky][kx][src_c][ws]`, zero padded past `dst_c`.
    pub(super) wpack: &'a [f32],
    /// Bias padded to whole blocks, if any.
    pub(super) bias: Option<&'a [f32]>,
    pub(super) relu: bool,
    /// Width of a packed channel block (`nvm * lanes`).
    pub(super) ws: usize,
    /// Vectors per full channel block.
    pub(super) nvm: usize,
}

/// How [`run_gather`] splits one [`Gather`]: the axis classes and the tasks.
struct Plan<'a> {
    y: Axis<'a>,
    x: Axis<'a>,
    /// Output pixels per task.
    task_pixels: usize,
    /// `pair_tasks[p] .. pair_tasks[p+1]` are the tasks of class pair `p`.
    pair_tasks: &'a [isize],
    /// `offs[offs_start[p] as usize..offs_start[p + 1] as usize]` is the
    /// reduction list of class pair `p` (see [`pair_offsets`]).
    offs: &'a [isize],
    offs_start: &'a [isize],
}

/// The reduction list of class pair `(cy, cx)`, flattened over (tap,
/// channel): `red` source offsets, then `red` packed-filter offsets, into
/// `out` (`2 * red` long). Built once per call on the calling thread, not
/// per task: a per-task buffer would live in the scratch of whichever worker
/// steals the task, and a worker that first steals one in a steady-state
/// step would allocate it then.
fn pair_offsets(g: &Gather, y: &Axis, x: &Axis, cy: usize, cx: usize, out: &mut [isize]) {
    let (nty, ntx) = (y.ntaps[cy] as usize, x.ntaps[cx] as usize);
    let (xo, wo) = out.split_at_mut(nty * ntx * g.src_c);
    let mut r = 0;
    for a in 0..nty {
        let (ky, ry) = (y.tap_k[cy * y.k + a], y.tap_rel[cy * y.k + a]);
        for b in 0..ntx {
            let (kx, rx) = (x.tap_k[cx * x.k + b], x.tap_rel[cx * x.k + b]);
            let x0 = (ry * g.src_w as isize + rx) * g.src_c as isize;
            let w0 = (ky * x.k as isize + kx) * (g.src_c * g.ws) as isize;
            for c in 0..g.src_c as isize {
                xo[r] = x0 + c;
                wo[r] = w0 + c * g.ws as isize;
                r += 1;
            }
        }
    }
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

/// Runs a gather convolution over every output pixel; `ytap(o, k)` /
/// `xtap(o, k)` give the source coordinate of output `o` and tap `k`, if
/// it is inside the source.
pub(super) fn run_gather(
    g: &Gather,
    ytap: impl Fn(usize, usize) -> Option<isize>,
    xtap: impl Fn(usize, usize) -> Option<isize>,
) {
    if super::pointwise::is_pointwise(g, &ytap, &xtap) {
        super::pointwise::run_pointwise(g);
        return;
    }
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
    let mut offs_start = scratch_isize(Slot::Tiles, pairs + 1);
    offs_start[0] = 0;
    for cy in 0..y.classes {
        for cx in 0..x.classes {
            let red = (y.ntaps[cy] * x.ntaps[cx]) as usize * g.src_c;
            let i = cy * x.classes + cx;
            offs_start[i + 1] = offs_start[i] + 2 * red as isize;
        }
    }
    let mut offs = scratch_isize(Slot::Filter, offs_start[pairs] as usize);
    for cy in 0..y.classes {
        for cx in 0..x.classes {
            let i = cy * x.classes + cx;
            let out = &mut offs[offs_start[i] as usize..offs_start[i + 1] as usize];
            pair_offsets(g, &y, &x, cy, cx, out);
        }
    }
    let plan = Plan { y, x, task_pixels, pair_tasks: &pair_tasks, offs: &offs, offs_start: &offs_start };
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
    let red = (plan.y.ntaps[cy] * plan.x.ntaps[cx]) as usize * g.src_c;
    let offs = &plan.offs[plan.offs_start[pair] as usize..plan.offs_start[pair + 1] as usize];
    let (xo, wo) = offs.split_at(red);
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
    // `zip`, not `wo[r]`: the two lists come from one slice split in two,
    // and LLVM cannot prove their lengths equal, so an indexed `wo[r]` keeps
    // a bounds check in this loop, whose registers then push the `P` pixel
    // pointers out to memory: 1.3x slower on the chapter's second layer.
    for (&x_off, &w_off) in xo.iter().zip(wo) {
        let mut wv = [isa.zero(); NV];
        for j in 0..NV {
            // SAFETY: packed row r holds NV*LANES readable floats.
            wv[j] = unsafe { isa.load(w.offset(w_off).add(j * S::LANES)) };
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
