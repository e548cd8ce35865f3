//! Backward-filter of the [`direct`](super) algorithm: per-tap SIMD reductions over pixels, in fixed chunks whose
//! partial sums are added in a fixed order (bit-identical for any number of
//! threads). See the `direct` module docs for the scheme.

// Register-tile loops index several fixed-size arrays in lockstep.
#![allow(clippy::needless_range_loop)]

use super::channel_blocking;
use crate::arch::{scratch_f32, FtzGuard, SendPtr, Slot};
#[cfg(target_arch = "x86_64")]
use crate::arch::{Avx2, Avx512};
use crate::arch::{Isa, Token, Vf32};
use crate::conv::ConvShape;
use rayon::prelude::*;

/// Target output pixels per backward-filter chunk. Each chunk holds whole
/// images and produces one partial `dw`; fewer, larger chunks mean less
/// partial memory and summing, more chunks mean more parallel work.
/// Independent of the thread count, so the reduction order is fixed.
pub const FILTER_CHUNK_PIXELS: usize = 4096;

/// At most this many backward-filter partials (bounds their memory at
/// `MAX_FILTER_PARTIALS * filter_len` floats).
const MAX_FILTER_PARTIALS: usize = 16;

// ---------------------------------------------------------------------------
// Backward-filter
// ---------------------------------------------------------------------------

/// One backward-filter problem and its fixed chunking.
struct FilterJob<'a> {
    s: &'a ConvShape,
    input: &'a [f32],
    grad_output: &'a [f32],
    /// Partial `dw` of chunk 0 is `grad_filter` itself; chunk `c > 0`
    /// writes `partials[(c - 1) * filter_len ..]`.
    dw0: SendPtr<f32>,
    partials: SendPtr<f32>,
    images_per_chunk: usize,
    /// Input channels per task (`R`) and output channels per task (`ws`).
    rows: usize,
    ws: usize,
    token: Token,
}

/// Rows of input channels `R` and pixel interleave `G` for `c_in` channels.
///
/// Four rows from two input channels up, the rows past `c_in` repeating
/// the last channel (computed, never stored): an RGB layer wastes a quarter
/// of its FMAs but loads each output-gradient vector once for three
/// channels instead of once per channel. Measured (`convnet bench conv
/// --backward --algo direct`, 2 threads, ms, four rows vs one row and four
/// pixel groups): 32x112x112x3->32 stride 2 0.81-0.91 vs 1.83-1.88,
/// 8x224x224x3->64 13.0-13.3 vs 24.5-26.4, 16x56x56x2->32 0.30 vs
/// 0.41-0.43; one channel stays on one row (64x28x28x1->32 0.25-0.26 vs
/// 0.29-0.31 with four).
fn filter_rows(c_in: usize) -> (usize, usize) {
    if c_in >= 2 {
        (4, 1)
    } else {
        (1, 4)
    }
}

/// Output coordinates `o` whose tap `k` lands inside the input: `lo..hi`.
fn valid_range(out: usize, k: usize, stride: usize, dil: usize, pad: usize, size: usize) -> (usize, usize) {
    let kd = k * dil;
    let lo = if pad > kd { (pad - kd).div_ceil(stride) } else { 0 };
    let hi = if size + pad > kd { (size + pad - kd).div_ceil(stride).min(out) } else { 0 };
    (lo.min(hi), hi)
}

/// Backward-filter pass (overwrites `grad_filter`), on `token`'s instruction set.
pub(crate) fn backward_filter(
    token: Token,
    s: &ConvShape,
    input: &[f32],
    grad_output: &[f32],
    grad_filter: &mut [f32],
) {
    let _ftz = FtzGuard::new();
    if super::pointwise::filter_applies(token, s) {
        super::pointwise::backward_filter(token, s, input, grad_output, grad_filter);
        return;
    }
    let (lanes, nvm) = channel_blocking(token.level(), s.c_out);
    let ws = nvm * lanes;
    let (images_per_chunk, chunks) = chunking(s);
    let flen = s.filter_len();
    let mut partials = scratch_f32(Slot::Partial, (chunks - 1) * flen);
    let (rows, _) = filter_rows(s.c_in);
    let job = FilterJob {
        s,
        input,
        grad_output,
        dw0: SendPtr(grad_filter.as_mut_ptr()),
        partials: SendPtr(partials.as_mut_ptr()),
        images_per_chunk,
        rows,
        ws,
        token,
    };
    let taps = s.kh * s.kw;
    let rblocks = s.c_in.div_ceil(rows);
    let cblocks = s.c_out.div_ceil(ws);
    let tasks = chunks * taps * rblocks * cblocks;
    (0..tasks).into_par_iter().for_each(|t| {
        let _ftz = FtzGuard::new();
        match job.token {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the token proves AVX-512F/AVX2/FMA; `job` describes in-bounds buffers.
            Token::Avx512(isa) => unsafe { filter_task_avx512(isa, &job, t) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the token proves AVX2/FMA; `job` describes in-bounds buffers.
            Token::Avx2(isa) => unsafe { filter_task_avx2(isa, &job, t) },
            // SAFETY: `job` describes in-bounds buffers.
            Token::Portable(isa) => unsafe { filter_task(isa, &job, t) },
        }
    });
    add_partials(grad_filter, &partials, chunks);
}

/// `(images per chunk, chunks)` of a backward-filter: whole images, about
/// [`FILTER_CHUNK_PIXELS`] output pixels each, at most
/// [`MAX_FILTER_PARTIALS`] chunks. A function of the shape only.
pub(super) fn chunking(s: &ConvShape) -> (usize, usize) {
    let per_img = s.out_h() * s.out_w();
    let mut images_per_chunk = (FILTER_CHUNK_PIXELS / per_img.max(1)).max(1);
    if s.n.div_ceil(images_per_chunk) > MAX_FILTER_PARTIALS {
        images_per_chunk = s.n.div_ceil(MAX_FILTER_PARTIALS);
    }
    (images_per_chunk, s.n.div_ceil(images_per_chunk))
}

/// Adds the partials of chunks `1 .. chunks` (`grad_filter.len()` floats
/// each) into `grad_filter`, which holds chunk 0's: in chunk order, in
/// parallel over fixed slices of `grad_filter`, so the order per element
/// never depends on the pool.
pub(super) fn add_partials(grad_filter: &mut [f32], partials: &[f32], chunks: usize) {
    let flen = grad_filter.len();
    if chunks > 1 {
        grad_filter.par_chunks_mut(1024).enumerate().for_each(|(i, d)| {
            let _ftz = FtzGuard::new();
            for c in 0..chunks - 1 {
                let p = &partials[c * flen + i * 1024..][..d.len()];
                d.iter_mut().zip(p).for_each(|(d, &p)| *d += p);
            }
        });
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn filter_task_avx512(isa: Avx512, job: &FilterJob, t: usize) {
    // SAFETY: forwarded contract of filter_task.
    unsafe { filter_task::<_>(isa, job, t) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn filter_task_avx2(isa: Avx2, job: &FilterJob, t: usize) {
    // SAFETY: forwarded contract of filter_task.
    unsafe { filter_task::<_>(isa, job, t) }
}

/// Task `t`: one (chunk, tap, input-channel block, output-channel block).
///
/// # Safety
///
/// `job.dw0` holds `filter_len` and `job.partials` `(chunks-1)*filter_len`
/// writable floats; tasks write disjoint `(chunk, tap, rows, cols)` blocks.
#[inline(always)]
unsafe fn filter_task<S: Isa>(isa: S, job: &FilterJob, t: usize) {
    let s = job.s;
    let taps = s.kh * s.kw;
    let rblocks = s.c_in.div_ceil(job.rows);
    let cblocks = s.c_out.div_ceil(job.ws);
    let cb = t % cblocks;
    let rb = t / cblocks % rblocks;
    let tap = t / (cblocks * rblocks) % taps;
    let chunk = t / (cblocks * rblocks * taps);
    let (ky, kx) = (tap / s.kw, tap % s.kw);
    let c0 = cb * job.ws;
    let nvalid = job.ws.min(s.c_out - c0);
    let nv = nvalid.div_ceil(S::LANES);
    let r0 = rb * job.rows;
    let rvalid = job.rows.min(s.c_in - r0);
    let dw = if chunk == 0 { job.dw0.get() } else { job.partials.get().wrapping_add((chunk - 1) * s.filter_len()) };
    // SAFETY: the block (tap, r0.., c0..) of this chunk's partial is in bounds.
    let dst = unsafe { dw.add((tap * s.c_in + r0) * s.c_out + c0) };
    let n0 = chunk * job.images_per_chunk;
    let n1 = (n0 + job.images_per_chunk).min(s.n);
    let a = TapBlock { s, input: job.input, grad_output: job.grad_output, ky, kx, r0, rvalid, c0, nvalid, n0, n1, dst };
    // SAFETY: forwarded contract.
    unsafe {
        match (job.rows, nv) {
            (4, 1) => reduce_tap_block::<S, 4, 1, 1>(isa, &a),
            (4, 2) => reduce_tap_block::<S, 4, 2, 1>(isa, &a),
            (4, 3) => reduce_tap_block::<S, 4, 3, 1>(isa, &a),
            (4, _) => reduce_tap_block::<S, 4, 4, 1>(isa, &a),
            (_, 1) => reduce_tap_block::<S, 1, 1, 4>(isa, &a),
            (_, 2) => reduce_tap_block::<S, 1, 2, 4>(isa, &a),
            (_, 3) => reduce_tap_block::<S, 1, 3, 4>(isa, &a),
            (_, _) => reduce_tap_block::<S, 1, 4, 4>(isa, &a),
        }
    }
}

struct TapBlock<'a> {
    s: &'a ConvShape,
    input: &'a [f32],
    grad_output: &'a [f32],
    ky: usize,
    kx: usize,
    /// First input channel and how many of the `R` rows are real.
    r0: usize,
    rvalid: usize,
    /// First output channel and how many of the `NV*LANES` are real.
    c0: usize,
    nvalid: usize,
    /// Images of this chunk.
    n0: usize,
    n1: usize,
    dst: *mut f32,
}

/// Loads `LANES` floats from `p`, or only the first `valid` of them (the
/// rest zero) when `valid < LANES`.
///
/// # Safety
///
/// `p` readable for `min(valid, LANES)` floats.
#[inline(always)]
unsafe fn load_part<S: Isa>(isa: S, p: *const f32, valid: usize) -> S::V {
    if valid >= S::LANES {
        // SAFETY: LANES readable floats.
        unsafe { isa.load(p) }
    } else {
        let mut tmp = [0f32; 16];
        // SAFETY: `valid` readable floats.
        unsafe { std::ptr::copy_nonoverlapping(p, tmp.as_mut_ptr(), valid) };
        // SAFETY: tmp holds 16 >= LANES floats.
        unsafe { isa.load(tmp.as_ptr()) }
    }
}

/// Reduces `x[pixel + tap, r0..r0+R] (x) dy[pixel, c0..c0+NV*LANES]` over the
/// chunk's pixels whose tap is inside the input, into `R x NV` vector
/// accumulators times `G` pixel groups (summed in a fixed order at the end),
/// and stores the `rvalid x nvalid` block (row stride `c_out`).
///
/// # Safety
///
/// `a.dst` writable for that block; the other fields describe `a.s`.
#[inline(always)]
unsafe fn reduce_tap_block<S: Isa, const R: usize, const NV: usize, const G: usize>(isa: S, a: &TapBlock) {
    let s = a.s;
    let (oh, ow) = (s.out_h(), s.out_w());
    let (ylo, yhi) = valid_range(oh, a.ky, s.stride_h, s.dilation_h, s.pad_top, s.h);
    let (xlo, xhi) = valid_range(ow, a.kx, s.stride_w, s.dilation_w, s.pad_left, s.w);
    // A tap with no valid column (tiny input, wide padding) sums nothing:
    // skip the rows too, whose column offset `ix0` would underflow.
    let (ylo, yhi) = if xlo < xhi { (ylo, yhi) } else { (0, 0) };
    let mut acc = [[[isa.zero(); NV]; R]; G];
    // Rows past c_in repeat the last real channel (never stored).
    let mut roff = [0usize; R];
    for (r, o) in roff.iter_mut().enumerate() {
        *o = r.min(a.rvalid - 1);
    }
    let full = a.nvalid == NV * S::LANES;
    let xstep = s.stride_w * s.c_in;
    for n in a.n0..a.n1 {
        for oy in ylo..yhi {
            let iy = oy * s.stride_h + a.ky * s.dilation_h - s.pad_top;
            let ix0 = xlo * s.stride_w + a.kx * s.dilation_w - s.pad_left;
            let xrow = &a.input[((n * s.h + iy) * s.w + ix0) * s.c_in + a.r0..];
            let grow = &a.grad_output[((n * oh + oy) * ow + xlo) * s.c_out + a.c0..];
            let xp = xrow.as_ptr();
            let gp = grow.as_ptr();
            let count = xhi - xlo;
            let mut i = 0;
            while i + G <= count {
                for g in 0..G {
                    // SAFETY: pixel xlo+i+g < xhi is valid for this tap, so
                    // its input row and gradient row are in bounds.
                    unsafe {
                        let x = xp.add((i + g) * xstep);
                        let d = gp.add((i + g) * s.c_out);
                        let mut dv = [isa.zero(); NV];
                        for (j, v) in dv.iter_mut().enumerate() {
                            *v = if full {
                                isa.load(d.add(j * S::LANES))
                            } else {
                                load_part(isa, d.add(j * S::LANES), a.nvalid.saturating_sub(j * S::LANES))
                            };
                        }
                        for r in 0..R {
                            let b = isa.splat(*x.add(roff[r]));
                            for j in 0..NV {
                                acc[g][r][j] = b.mul_add(dv[j], acc[g][r][j]);
                            }
                        }
                    }
                }
                i += G;
            }
            while i < count {
                // SAFETY: as above, for the remaining pixels (group 0).
                unsafe {
                    let x = xp.add(i * xstep);
                    let d = gp.add(i * s.c_out);
                    let mut dv = [isa.zero(); NV];
                    for (j, v) in dv.iter_mut().enumerate() {
                        *v = if full {
                            isa.load(d.add(j * S::LANES))
                        } else {
                            load_part(isa, d.add(j * S::LANES), a.nvalid.saturating_sub(j * S::LANES))
                        };
                    }
                    for r in 0..R {
                        let b = isa.splat(*x.add(roff[r]));
                        for j in 0..NV {
                            acc[0][r][j] = b.mul_add(dv[j], acc[0][r][j]);
                        }
                    }
                }
                i += 1;
            }
        }
    }
    for r in 0..a.rvalid {
        for j in 0..NV {
            let mut v = acc[0][r][j];
            for g in acc.iter().skip(1) {
                v = v.add(g[r][j]);
            }
            let lo = j * S::LANES;
            // SAFETY: row r < rvalid of the block, channels lo.. < nvalid.
            unsafe {
                let d = a.dst.add(r * s.c_out + lo);
                if lo + S::LANES <= a.nvalid {
                    v.store(d);
                } else if lo < a.nvalid {
                    let mut tmp = [0f32; 16];
                    v.store(tmp.as_mut_ptr());
                    std::ptr::copy_nonoverlapping(tmp.as_ptr(), d, a.nvalid - lo);
                }
            }
        }
    }
}
