//! The gather engine's fast path for a pointwise gather: a 1x1 window whose
//! source pixel is the destination pixel (a 1x1 convolution at stride 1,
//! forward or backward-data, the pointwise half of a separable layer).
//!
//! Then the `n * h * w` pixels are the rows of one dense matrix, `src_c`
//! floats apart, and the convolution is the matrix product
//! `dst[M x dst_c] = src[M x src_c] . w[src_c x dst_c]` with the filter
//! already packed in channel blocks (`[block][src_c][ws]`). The general
//! engine reaches each pixel through a pointer of its own, `P` of them live
//! in general-purpose registers, so it keeps its tiles small (8 pixels for
//! two output vectors); here a pixel is `row * src_c` floats past the tile's
//! first, so the tile is as tall as the vector registers allow (`MR x NV`:
//! 12x2, 8x3, 6x4 with 16 lanes) and the reduction walks one pointer.
//!
//! Same arithmetic as the general engine for every output (bias first,
//! then the channels in order, one FMA each, then the activation), so the
//! two paths give the same bits.

// Register-tile loops index fixed-size arrays in lockstep.
#![allow(clippy::needless_range_loop)]

use super::filter::{add_partials, chunking};
use super::gather::Gather;
use crate::arch::par::par_tasks;
use crate::arch::{scratch_f32, FtzGuard, SendPtr, Slot};
#[cfg(target_arch = "x86_64")]
use crate::arch::{Avx2, Avx512};
use crate::arch::{Isa, Portable, Token, Vf32};
use crate::conv::ConvShape;
use crate::simd::SimdLevel;

/// Pixel rows per task: a fixed count, so the split depends on the shape
/// only (each output is computed by one task in the same order anyway).
const TASK_ROWS: usize = 192;

/// Tile height `MR` for `nv` vectors per channel block at `level`: as many
/// accumulators as the vector registers hold beside the `nv` filter vectors
/// and one broadcast.
fn tile_rows(level: SimdLevel, nv: usize) -> usize {
    match (level, nv) {
        (SimdLevel::Avx512, 1) => 16,
        (SimdLevel::Avx512, 2) => 12,
        (SimdLevel::Avx512, 3) => 8,
        (SimdLevel::Avx512, _) => 6,
        (SimdLevel::Avx2, 1) => 12,
        (SimdLevel::Avx2, _) => 6,
        (SimdLevel::Portable, 1) => 6,
        (SimdLevel::Portable, _) => 3,
    }
}

#[cfg(test)]
thread_local! {
    /// Tests set this to run pointwise shapes through the general engine
    /// and reduction, to compare the two.
    pub(super) static GENERAL_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a test asked for the general paths only.
fn general_only() -> bool {
    #[cfg(test)]
    {
        GENERAL_ONLY.with(|g| g.get())
    }
    #[cfg(not(test))]
    {
        false
    }
}

/// Whether `g` with these tap functions is pointwise: a 1x1 window whose
/// only tap reads the same pixel of a source of the destination's size.
pub(super) fn is_pointwise(
    g: &Gather,
    ytap: &impl Fn(usize, usize) -> Option<isize>,
    xtap: &impl Fn(usize, usize) -> Option<isize>,
) -> bool {
    !general_only()
        && g.kh == 1
        && g.kw == 1
        && g.src_h == g.dst_h
        && g.src_w == g.dst_w
        && (0..g.dst_h).all(|o| ytap(o, 0) == Some(o as isize))
        && (0..g.dst_w).all(|o| xtap(o, 0) == Some(o as isize))
}

/// Runs a pointwise `g` (see [`is_pointwise`]) over all its pixels.
pub(super) fn run_pointwise(g: &Gather) {
    let rows = g.n * g.dst_h * g.dst_w;
    par_tasks(rows.div_ceil(TASK_ROWS), |t| {
        let (r0, r1) = (t * TASK_ROWS, ((t + 1) * TASK_ROWS).min(rows));
        run_job(g.token, g.nvm, &Job::Gather { g, r0, r1 });
    });
}

/// Whether [`backward_filter`] takes shape `s` at `token`'s level: a 1x1
/// window at stride 1 without padding (any dilation is the same), one
/// group, and whole vectors of output channels.
pub(super) fn filter_applies(token: Token, s: &ConvShape) -> bool {
    !general_only()
        && s.kh == 1
        && s.kw == 1
        && s.stride_h == 1
        && s.stride_w == 1
        && s.pad_top + s.pad_bottom + s.pad_left + s.pad_right == 0
        && s.groups == 1
        && s.c_out.is_multiple_of(super::channel_blocking(token.level(), s.c_out).0)
}

/// Pixels per cache block of the filter reduction: the block's input and
/// output-gradient rows (`K + N` floats each) fill about half the L2.
/// Measured on the separable network's 1x1 layers (batch 32): 256 to 512
/// KiB are level; 48 KiB (L1) loses 10-25%, 4 MiB or whole chunks 20-40%.
const FILTER_BLOCK_BYTES: usize = 512 << 10;

/// Aim for about this many tasks (chunks times groups of input channels),
/// so both cores have work when a small batch is one chunk.
const FILTER_TASKS: usize = 16;

/// Backward-filter of a pointwise convolution (see [`filter_applies`]):
/// `dw[K x N] = x^T . dy` with `x` the `M x K` input and `dy` the `M x N`
/// output gradient, `M = n * h * w`. The images go in the fixed chunks of
/// the general reduction (one partial `dw` each, added in chunk order);
/// within a chunk, a task owns a group of input channels and walks the
/// chunk's pixels in blocks that stay in L2, with `MR` input channels by
/// `NV` output vectors in registers per pass. Bit-identical for any number
/// of threads: every partial element is one task's sum in a fixed order.
pub(super) fn backward_filter(
    token: Token,
    s: &ConvShape,
    input: &[f32],
    grad_output: &[f32],
    grad_filter: &mut [f32],
) {
    let (lanes, nvm) = super::channel_blocking(token.level(), s.c_out);
    let ws = nvm * lanes;
    let (k, n) = (s.c_in, s.c_out);
    let per_img = s.h * s.w;
    let (images_per_chunk, chunks) = chunking(s);
    let mr = tile_rows(token.level(), nvm);
    let tiles = k.div_ceil(mr);
    let groups = (FILTER_TASKS / chunks).clamp(1, tiles);
    let group_rows = tiles.div_ceil(groups) * mr;
    let groups = k.div_ceil(group_rows);
    let block = (FILTER_BLOCK_BYTES / 4 / (k + n)).max(mr);
    let flen = grad_filter.len();
    let mut partials = scratch_f32(Slot::Partial, (chunks - 1) * flen);
    let (dw0, parts) = (SendPtr(grad_filter.as_mut_ptr()), SendPtr(partials.as_mut_ptr()));
    par_tasks(chunks * groups, |t| {
        let (chunk, group) = (t / groups, t % groups);
        let m0 = chunk * images_per_chunk * per_img;
        let m1 = ((chunk + 1) * images_per_chunk).min(s.n) * per_img;
        let dw = if chunk == 0 { dw0.get() } else { parts.get().wrapping_add((chunk - 1) * flen) };
        let f = FilterTask {
            x: input,
            dy: grad_output,
            k,
            n,
            ws,
            rows: (group * group_rows, ((group + 1) * group_rows).min(k)),
            pixels: (m0, m1),
            block,
            dw,
        };
        run_job(token, nvm, &Job::Filter(f));
    });
    add_partials(grad_filter, &partials, chunks);
}

/// One task of [`backward_filter`]: input channels `rows`, pixels `pixels`,
/// into the chunk's partial `dw` (`k x n`, rows of `n`).
struct FilterTask<'a> {
    x: &'a [f32],
    dy: &'a [f32],
    k: usize,
    n: usize,
    ws: usize,
    rows: (usize, usize),
    pixels: (usize, usize),
    /// Pixels per cache block.
    block: usize,
    dw: *mut f32,
}

/// The work of one task of either pass.
enum Job<'a, 'b> {
    /// Forward or backward-data rows `r0 .. r1`.
    Gather {
        g: &'b Gather<'a>,
        r0: usize,
        r1: usize,
    },
    Filter(FilterTask<'b>),
}

/// Runs `job` at `token`'s level with the tile height of `nvm` vectors.
fn run_job(token: Token, nvm: usize, job: &Job) {
    let _ftz = FtzGuard::new();
    match token {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves AVX-512F/AVX2/FMA; the job describes
        // in-bounds buffers and tasks write disjoint outputs.
        Token::Avx512(isa) => unsafe { job_avx512(isa, nvm, job) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves AVX2/FMA; as above.
        Token::Avx2(isa) => unsafe { job_avx2(isa, nvm, job) },
        // SAFETY: as above.
        Token::Portable(isa) => unsafe { job_portable(isa, nvm, job) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn job_avx512(isa: Avx512, nvm: usize, job: &Job) {
    // SAFETY: forwarded from `run_job`.
    unsafe {
        match nvm {
            1 => job_rows::<_, 16>(isa, job),
            2 => job_rows::<_, 12>(isa, job),
            3 => job_rows::<_, 8>(isa, job),
            _ => job_rows::<_, 6>(isa, job),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn job_avx2(isa: Avx2, nvm: usize, job: &Job) {
    // SAFETY: forwarded from `run_job`.
    unsafe {
        match nvm {
            1 => job_rows::<_, 12>(isa, job),
            _ => job_rows::<_, 6>(isa, job),
        }
    }
}

unsafe fn job_portable(isa: Portable, nvm: usize, job: &Job) {
    // SAFETY: forwarded from `run_job`.
    unsafe {
        match nvm {
            1 => job_rows::<_, 6>(isa, job),
            _ => job_rows::<_, 3>(isa, job),
        }
    }
}

/// `job` with tiles of `MR` rows ([`tile_rows`] of the level and `nvm`).
///
/// # Safety
///
/// The job describes in-bounds buffers; no other task writes its outputs.
#[inline(always)]
unsafe fn job_rows<S: Isa, const MR: usize>(isa: S, job: &Job) {
    // SAFETY: forwarded.
    unsafe {
        match job {
            Job::Gather { g, r0, r1 } => task::<S, MR>(isa, g, *r0, *r1),
            Job::Filter(f) => filter_task::<S, MR>(isa, f),
        }
    }
}

/// One [`FilterTask`]: for each block of pixels, each tile of `MR` input
/// channels and each channel block of outputs, `dw[rows, cols] (+)=
/// x[pixels, rows]^T . dy[pixels, cols]`; the first block overwrites, the
/// others add.
///
/// The tile's `MR` input channels of the block's pixels are first copied
/// into a panel, `MR` floats per pixel one after the other, which every
/// channel block of outputs then reads in order. Read in place, each
/// reduction step fetched a line of `x` for `MR` floats of it, `k` floats
/// after the previous step's, and again for the next tile of rows once the
/// block had evicted it. The last rows of the group, fewer than `MR`, go
/// as one tile too, their panel padded with zeros and their sums taken
/// through a scratch tile (before, one row at a time: a whole walk of the
/// block's output gradient for `NV` FMAs per step). Each sum is the same
/// chain of FMAs in the same order as before, so the bits are the same.
///
/// # Safety
///
/// `f.x` holds the pixels' `k` floats, `f.dy` their `n`; `f.dw` is valid
/// for `k * n` floats, rows `f.rows` of which only this task writes.
#[inline(always)]
unsafe fn filter_task<S: Isa, const MR: usize>(isa: S, f: &FilterTask) {
    let (p0, p1) = f.pixels;
    let (k0, k1) = f.rows;
    let panel_len = f.block * MR;
    // Every task of the call needs the same size, so plain scratch (no
    // call-wide maximum to grow to).
    let mut buf = scratch_f32(Slot::Column, panel_len + MR * f.ws);
    let (panel, part) = buf.split_at_mut(panel_len);
    let mut first = true;
    let mut m = p0;
    while m < p1 {
        let len = f.block.min(p1 - m);
        let mut row = k0;
        while row < k1 {
            let rows = MR.min(k1 - row);
            let x = &f.x[m * f.k + row..];
            let panel = &mut panel[..len * MR];
            // A full tile copies a compile-time MR floats per pixel (no
            // length-dependent copy in the loop); the last rows pad.
            if rows == MR {
                for (i, d) in panel.chunks_exact_mut(MR).enumerate() {
                    d.copy_from_slice(&x[i * f.k..][..MR]);
                }
            } else {
                for (i, d) in panel.chunks_exact_mut(MR).enumerate() {
                    let (head, pad) = d.split_at_mut(rows);
                    head.copy_from_slice(&x[i * f.k..][..rows]);
                    pad.fill(0.0);
                }
            }
            let mut c0 = 0;
            while c0 < f.n {
                let nvalid = f.ws.min(f.n - c0);
                // SAFETY: row < k, c0 < n: inside the k x n partial.
                let d = unsafe { f.dw.add(row * f.n + c0) };
                let (c, ldc, accumulate) = if rows == MR { (d, f.n, !first) } else { (part.as_mut_ptr(), f.ws, false) };
                let t = Tile {
                    a: panel.as_ptr(),
                    a_row: 1,
                    a_step: MR,
                    k: len,
                    w: f.dy[m * f.n + c0..].as_ptr(),
                    w_step: f.n,
                    bias: std::ptr::null(),
                    c,
                    ldc,
                    nvalid,
                    relu: false,
                    accumulate,
                };
                // SAFETY: the panel holds len steps of MR floats; pixels
                // m .. m + len hold n floats of dy, read in whole vectors (n
                // is a multiple of the lanes); `c` is rows row .. row + MR
                // of dw (this task's) or the MR x ws scratch tile.
                unsafe { micro_nv::<S, MR>(isa, &t, nvalid / S::LANES) };
                if rows < MR {
                    for (p, sums) in part.chunks_exact(f.ws).take(rows).enumerate() {
                        // SAFETY: row + p < k1 <= k and c0 + nvalid <= n:
                        // inside this task's rows of the partial.
                        let out = unsafe { std::slice::from_raw_parts_mut(d.add(p * f.n), nvalid) };
                        for (o, &v) in out.iter_mut().zip(&sums[..nvalid]) {
                            *o = if first { v } else { v + *o };
                        }
                    }
                }
                c0 += f.ws;
            }
            row += rows;
        }
        first = false;
        m += len;
    }
}

/// Pixel rows `r0 .. r1` of `g`, every channel block, in tiles of `MR`
/// rows (the last tile of the range one row at a time).
///
/// # Safety
///
/// `g` is pointwise and describes in-bounds buffers; no other task writes
/// rows `r0 .. r1` of the destination.
#[inline(always)]
unsafe fn task<S: Isa, const MR: usize>(isa: S, g: &Gather, r0: usize, r1: usize) {
    let k = g.src_c;
    let blocks = g.dst_c.div_ceil(g.ws);
    for blk in 0..blocks {
        let c0 = blk * g.ws;
        let nvalid = g.ws.min(g.dst_c - c0);
        let nv = nvalid.div_ceil(S::LANES);
        let w = g.wpack[blk * k * g.ws..].as_ptr();
        let bias = g.bias.map_or(std::ptr::null(), |b| b[c0..].as_ptr());
        let mut r = r0;
        // SAFETY: rows r .. r + MR (or r alone) are inside r0 .. r1; the
        // packed block holds k rows of ws >= nv * LANES floats.
        unsafe {
            while r + MR <= r1 {
                tile_nv::<S, MR>(isa, g, r, c0, nv, w, bias, nvalid);
                r += MR;
            }
            while r < r1 {
                tile_nv::<S, 1>(isa, g, r, c0, nv, w, bias, nvalid);
                r += 1;
            }
        }
    }
}

/// One tile: rows `r .. r + MR`, `nv` vectors of outputs from `c0`.
///
/// # Safety
///
/// As [`task`]; rows `r .. r + MR` are in the task's range.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn tile_nv<S: Isa, const MR: usize>(
    isa: S,
    g: &Gather,
    r: usize,
    c0: usize,
    nv: usize,
    w: *const f32,
    bias: *const f32,
    nvalid: usize,
) {
    let a = g.src[r * g.src_c..].as_ptr();
    // SAFETY: destination row r + MR - 1 ends inside dst (n*h*w rows of dst_c).
    let c = unsafe { g.dst.get().add(r * g.dst_c + c0) };
    let t = Tile {
        a,
        a_row: g.src_c,
        a_step: 1,
        k: g.src_c,
        w,
        w_step: g.ws,
        bias,
        c,
        ldc: g.dst_c,
        nvalid,
        relu: g.relu,
        accumulate: false,
    };
    // SAFETY: forwarded.
    unsafe { micro_nv::<S, MR>(isa, &t, nv) }
}

/// [`micro`] with `NV` picked from `nv` (1 to 4).
///
/// # Safety
///
/// As [`micro`] with `NV = nv`.
#[inline(always)]
unsafe fn micro_nv<S: Isa, const MR: usize>(isa: S, t: &Tile, nv: usize) {
    // SAFETY: forwarded.
    unsafe {
        match nv {
            1 => micro::<S, MR, 1>(isa, t),
            2 => micro::<S, MR, 2>(isa, t),
            3 => micro::<S, MR, 3>(isa, t),
            _ => micro::<S, MR, 4>(isa, t),
        }
    }
}

/// The operands of one micro-kernel call: an `MR x k` matrix `a` (row `p`,
/// step `s` at `a + p * a_row + s * a_step`) times a `k x (NV * LANES)`
/// matrix `w` (step `s` at `w + s * w_step`) into `MR` rows of `c`.
struct Tile {
    a: *const f32,
    a_row: usize,
    a_step: usize,
    /// Reduction steps.
    k: usize,
    w: *const f32,
    w_step: usize,
    /// Null, or `NV * LANES` readable floats: the accumulators' start.
    bias: *const f32,
    /// First destination row (`ldc` floats apart, `nvalid` written per row).
    c: *mut f32,
    ldc: usize,
    nvalid: usize,
    relu: bool,
    /// Add to what `c` holds instead of overwriting it.
    accumulate: bool,
}

/// `c[p, 0..nvalid] (+)= act(bias + sum_s a[p, s] * w[s, 0..nvalid])` for
/// the `MR` rows `p`: `MR x NV` accumulators, one row of `w` (`NV`
/// vectors) and `MR` broadcasts per reduction step.
///
/// # Safety
///
/// The pointers of `t` are valid for the extents its fields describe
/// (`w` rows readable for `NV * LANES` floats); `nvalid <= NV * LANES`.
#[inline(always)]
unsafe fn micro<S: Isa, const MR: usize, const NV: usize>(isa: S, t: &Tile) {
    let l = S::LANES;
    let mut acc = [[isa.zero(); NV]; MR];
    if !t.bias.is_null() {
        for j in 0..NV {
            // SAFETY: bias readable for NV * LANES floats (padded).
            let b = unsafe { isa.load(t.bias.add(j * l)) };
            for a in acc.iter_mut() {
                a[j] = b;
            }
        }
    }
    // SAFETY: the extents of `t` (contract).
    unsafe {
        let (mut ap, mut wp) = (t.a, t.w);
        for _ in 0..t.k {
            let mut wv = [isa.zero(); NV];
            for j in 0..NV {
                wv[j] = isa.load(wp.add(j * l));
            }
            for p in 0..MR {
                let b = isa.splat(*ap.add(p * t.a_row));
                for j in 0..NV {
                    acc[p][j] = b.mul_add(wv[j], acc[p][j]);
                }
            }
            ap = ap.add(t.a_step);
            wp = wp.add(t.w_step);
        }
    }
    let zero = isa.zero();
    for p in 0..MR {
        // SAFETY: row p of c is writable for nvalid floats.
        let d = unsafe { t.c.add(p * t.ldc) };
        for j in 0..NV {
            let v = if t.relu { acc[p][j].max(zero) } else { acc[p][j] };
            let lo = j * l;
            if lo + l <= t.nvalid {
                // SAFETY: a whole vector inside the valid channels.
                unsafe {
                    let v = if t.accumulate { v.add(isa.load(d.add(lo))) } else { v };
                    v.store(d.add(lo))
                };
            } else if lo < t.nvalid {
                let mut tmp = [0f32; 16];
                // SAFETY: tmp holds 16 >= LANES floats.
                unsafe { v.store(tmp.as_mut_ptr()) };
                for (i, &x) in tmp[..t.nvalid - lo].iter().enumerate() {
                    // SAFETY: lo + i < nvalid.
                    unsafe { *d.add(lo + i) = if t.accumulate { *d.add(lo + i) + x } else { x } };
                }
            }
        }
    }
}
