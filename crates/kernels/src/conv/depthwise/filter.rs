//! Depthwise backward-filter: `dw[ky, kx, co] = sum_{n, oy, ox}
//! x[n, iy, ix, co / multiplier] * dy[n, oy, ox, co]`, channels on the
//! vector lanes.
//!
//! The output rows of the whole batch are cut into a fixed number of
//! chunks that depends on the shape only; each chunk sums into its own
//! partial filter (`kh * kw * c_out` floats), and the partials are added in
//! chunk order afterwards. No atomics, and the same additions in the same
//! order for any number of threads, so the result is bit-identical.
//!
//! Within a chunk, for each output row and each tap `(ky, kx)`, the output
//! columns whose input column lies inside the image form one contiguous
//! range, so the innermost loop is a dot product over that range with the
//! accumulators in registers (no boundary test per pixel).

use crate::arch::par::par_chunks_mut;
use crate::arch::{scratch_f32, FtzGuard, Slot};
#[cfg(target_arch = "x86_64")]
use crate::arch::{Avx2, Avx512};
use crate::arch::{Isa, Scalar, Token, Vf32};

use super::TapTable;

/// Upper bound on the number of chunks (partial filters) of one call.
/// 32: more than enough tasks for any pool on the machines we target, and
/// the partials of a 512-channel 3x3 layer (32 x 18 KiB) stay in L2.
pub(super) const MAX_CHUNKS: usize = 32;

/// Each chunk reads at least about this many bytes of output gradient (and
/// as much input), so a small layer is a few chunks, not 32 rayon tasks
/// and 32 partial filters to add.
const MIN_CHUNK_BYTES: usize = 128 << 10;

/// One backward-filter call.
pub(super) struct FilterJob<'a> {
    /// Input `[n, h, w, c]`.
    pub x: &'a [f32],
    /// Output gradient `[n, oh, ow, ce]`.
    pub gy: &'a [f32],
    /// `(n, h, w, c)` of the input.
    pub in_dims: (usize, usize, usize, usize),
    /// `(oh, ow)`.
    pub out_hw: (usize, usize),
    /// Lanes: `c_out = c * multiplier`.
    pub ce: usize,
    /// `(kh, kw)`.
    pub k: (usize, usize),
    /// Per output row: `(ky, input row)` pairs.
    pub rows: TapTable<'a>,
    /// Per `kx`: `[ox_lo, ox_hi, ix(ox_lo)]`, the output columns whose input
    /// column is inside, and the first one's input column.
    pub col_ranges: &'a [isize],
    /// Horizontal stride.
    pub stride_w: usize,
}

impl FilterJob<'_> {
    /// Chunks of the batch's `n * oh` output rows: at most [`MAX_CHUNKS`],
    /// each reading at least [`MIN_CHUNK_BYTES`] of output gradient where
    /// the call is that big. A function of the shape only.
    pub fn chunks(&self) -> usize {
        let rows = self.in_dims.0 * self.out_hw.0;
        let bytes = rows * self.out_hw.1 * self.ce * 4;
        (bytes / MIN_CHUNK_BYTES).clamp(1, MAX_CHUNKS).min(rows)
    }

    /// The batch's output rows `g0 .. g1` (row `b * oh + oy`) of chunk `j`.
    pub fn chunk_rows(&self, j: usize) -> (usize, usize) {
        let (total, chunks) = (self.in_dims.0 * self.out_hw.0, self.chunks());
        (j * total / chunks, (j + 1) * total / chunks)
    }

    /// Floats of scratch [`row`] needs: one input row with each channel
    /// repeated `multiplier` times (0 without a multiplier).
    pub fn expand_len(&self) -> usize {
        let (_, _, w, c) = self.in_dims;
        if self.ce > c {
            w * self.ce
        } else {
            0
        }
    }
}

/// Runs `job` at `level` into `grad_filter` (`kh * kw * ce`, overwritten).
///
/// The caller guarantees `job` is consistent: buffer lengths match the
/// dimensions and every table entry is inside its axis.
pub(super) fn run(token: Token, job: &FilterJob, grad_filter: &mut [f32]) {
    let len = job.k.0 * job.k.1 * job.ce;
    let chunks = job.chunks();
    let mut partials = scratch_f32(Slot::Partial, chunks * len);
    par_chunks_mut(&mut partials, len, |j, part| {
        let _ftz = FtzGuard::new();
        part.fill(0.0);
        match token {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the token proves AVX-512F/AVX2/FMA;
            // `job` is consistent (the caller's contract above).
            Token::Avx512(isa) => unsafe { chunk_avx512(isa, job, j, part) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Token::Avx2(isa) => unsafe { chunk_avx2(isa, job, j, part) },
            // SAFETY: `job` is consistent.
            Token::Portable(isa) => unsafe { chunk(isa, job, j, part) },
        }
    });
    sum_partials(&partials, chunks, grad_filter);
}

/// `grad_filter = sum over j of partials[j]` (`grad_filter.len()` floats
/// each), added in chunk order whatever the pool: bit-identical for any
/// thread count.
///
/// On the calling thread below [`PAR_SUM_FLOATS`] floats of partials: the
/// sum of a 3x3x512 layer's 24 partials takes a few microseconds, less than
/// handing it to the pool.
pub(super) fn sum_partials(partials: &[f32], chunks: usize, grad_filter: &mut [f32]) {
    let len = grad_filter.len();
    let block = |b: usize, out: &mut [f32]| {
        out.copy_from_slice(&partials[b * 1024..][..out.len()]);
        for j in 1..chunks {
            let p = &partials[j * len + b * 1024..][..out.len()];
            out.iter_mut().zip(p).for_each(|(o, &v)| *o += v);
        }
    };
    if chunks * len < PAR_SUM_FLOATS {
        grad_filter.chunks_mut(1024).enumerate().for_each(|(b, out)| block(b, out));
    } else {
        par_chunks_mut(grad_filter, 1024, block);
    }
}

/// Partial-filter floats from which [`sum_partials`] splits over threads.
const PAR_SUM_FLOATS: usize = 1 << 20;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn chunk_avx512(isa: Avx512, job: &FilterJob, j: usize, part: &mut [f32]) {
    // SAFETY: forwarded from `run`.
    unsafe { chunk::<_>(isa, job, j, part) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn chunk_avx2(isa: Avx2, job: &FilterJob, j: usize, part: &mut [f32]) {
    // SAFETY: forwarded from `run`.
    unsafe { chunk::<_>(isa, job, j, part) }
}

/// Chunk `j`: adds its output rows' contributions into `part` (`[kh, kw, ce]`).
///
/// # Safety
///
/// `job` is consistent (see [`run`]).
#[inline(always)]
unsafe fn chunk<S: Isa>(isa: S, job: &FilterJob, j: usize, part: &mut [f32]) {
    let (g0, g1) = job.chunk_rows(j);
    let mut expanded = scratch_f32(Slot::Column, job.expand_len());
    for g in g0..g1 {
        // SAFETY: forwarded; `expanded` holds `expand_len()` floats.
        unsafe { row::<S>(isa, job, g, part, &mut expanded) };
    }
}

/// Adds output row `g` (`b * oh + oy`) of the batch's contributions into
/// `part` (`[kh, kw, ce]`); `expanded` is scratch of
/// [`FilterJob::expand_len`] floats.
///
/// # Safety
///
/// `job` is consistent (see [`run`]); `g < n * oh`.
#[inline(always)]
pub(super) unsafe fn row<S: Isa>(isa: S, job: &FilterJob, g: usize, part: &mut [f32], expanded: &mut [f32]) {
    let (_, h, w, c) = job.in_dims;
    let (oh, ow) = job.out_hw;
    let ce = job.ce;
    let kw = job.k.1;
    let mult = ce / c;
    let (b, oy) = (g / oh, g % oh);
    let gy_row = &job.gy[(b * oh + oy) * ow * ce..][..ow * ce];
    for rt in job.rows.taps(oy).chunks_exact(2) {
        let (ky, iy) = (rt[0] as usize, rt[1] as usize);
        let x_row = &job.x[(b * h + iy) * w * c..][..w * c];
        let x_row: &[f32] = if mult > 1 {
            for (d, s) in expanded.chunks_exact_mut(mult).zip(x_row) {
                d.fill(*s);
            }
            expanded
        } else {
            x_row
        };
        // SAFETY: the column ranges were built so that output columns
        // lo..hi of tap kx read input columns ix0 + (ox - lo) * stride_w,
        // all inside the row; gy_row holds ow * ce and x_row w * ce
        // floats; the taps of ky are inside `part`.
        unsafe { row_taps::<S>(isa, job, x_row, gy_row, &mut part[ky * kw * ce..][..kw * ce]) };
    }
}

/// Adds one `(output row, ky)` pair's contribution to the `kw` taps
/// `acc[kx, :]` (`kw * ce` floats).
///
/// The taps go three at a time (`kx .. kx + 3`, the whole row of a 3x3
/// filter): over the output columns where all three read inside the image
/// (`max lo .. min hi`), one pass keeps `3 x 2` accumulators in registers
/// and loads each output-gradient vector once for the three taps; the
/// columns at the borders, and the taps left over, go one tap at a time
/// ([`tap_dot`]).
///
/// # Safety
///
/// As [`tap_dot`], for every tap's column range in `job.col_ranges`.
#[inline(always)]
unsafe fn row_taps<S: Isa>(isa: S, job: &FilterJob, x_row: &[f32], gy_row: &[f32], acc: &mut [f32]) {
    const KT: usize = 3;
    let (ce, kw, stride) = (job.ce, job.k.1, job.stride_w);
    let range = |kx: usize| {
        let r = &job.col_ranges[kx * 3..][..3];
        (r[0] as usize, r[1] as usize, r[2] as usize)
    };
    let (x, gy, acc) = (x_row.as_ptr(), gy_row.as_ptr(), acc.as_mut_ptr());
    let mut kx = 0;
    // SAFETY: the contract above, for every call below; sub-ranges of a
    // tap's range start at the input column of their first output column.
    unsafe {
        while kx + KT <= kw {
            let r: [(usize, usize, usize); KT] = std::array::from_fn(|k| range(kx + k));
            let lo = r.iter().map(|r| r.0).max().unwrap_or(0);
            let hi = r.iter().map(|r| r.1).min().unwrap_or(0);
            if lo < hi {
                let ix: [usize; KT] = std::array::from_fn(|k| r[k].2 + (lo - r[k].0) * stride);
                taps_dot::<S, KT>(isa, x, gy, lo, hi, ix, stride * ce, ce, acc.add(kx * ce));
                for (k, &(rlo, rhi, ix0)) in r.iter().enumerate() {
                    let a = acc.add((kx + k) * ce);
                    tap_dot::<S>(isa, x, gy, rlo, lo.min(rhi), ix0, stride, ce, a);
                    if hi > rlo {
                        tap_dot::<S>(isa, x, gy, hi, rhi, ix0 + (hi - rlo) * stride, stride, ce, a);
                    }
                }
            } else {
                for (k, &(rlo, rhi, ix0)) in r.iter().enumerate() {
                    tap_dot::<S>(isa, x, gy, rlo, rhi, ix0, stride, ce, acc.add((kx + k) * ce));
                }
            }
            kx += KT;
        }
        for kx in kx..kw {
            let (rlo, rhi, ix0) = range(kx);
            tap_dot::<S>(isa, x, gy, rlo, rhi, ix0, stride, ce, acc.add(kx * ce));
        }
    }
}

/// `acc[k, c] += sum_{ox in lo..hi} x[ix[k] + (ox - lo) * stride, c] *
/// gy[ox, c]` for the `KT` taps `k` at once, lanes in blocks of two
/// vectors (one cache line), then one vector, then one lane; `xstep` is
/// `stride * ce`.
///
/// # Safety
///
/// Every addressed pixel is inside `x` and `gy` (rows of `ce` floats per
/// pixel); `acc` valid for `KT * ce` reads and writes.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn taps_dot<S: Isa, const KT: usize>(
    isa: S,
    x: *const f32,
    gy: *const f32,
    lo: usize,
    hi: usize,
    ix: [usize; KT],
    xstep: usize,
    ce: usize,
    acc: *mut f32,
) {
    let l = S::LANES;
    // Three neighbouring input columns per output column (undilated), at
    // stride 1 or 2: the sliding form loads each input vector once.
    if KT == 3 && ix[1] == ix[0] + 1 && ix[2] == ix[0] + 2 && (xstep == ce || xstep == 2 * ce) {
        let s1 = xstep == ce;
        // With 8 lanes, a pixel of more than two vectors of channels takes
        // several walks over the row, each reading one 64-byte line of every
        // pixel: walked whole, the rows' other lines were gone from the L1
        // by the next walk (a 112-pixel row of 32 channels is 14 KiB of
        // input and 14 KiB of gradient). Blocks of output columns whose
        // input and gradient fill about 16 KiB keep them for every walk
        // (AVX2 here, three alternated rounds: 112x112x32 2.63-2.85 ->
        // 2.01-2.34 ms, 28x28x256 0.84-1.37 -> 0.69-1.02). The block
        // boundaries are a function of the shape, so the sums stay
        // bit-identical for any thread count.
        let stride = xstep / ce;
        let pb = if l == 8 { (16384 / (4 * ce * (stride + 1))).clamp(4, 64) } else { hi - lo };
        let mut b = lo;
        while b < hi {
            let e = (b + pb).min(hi);
            let ixb = ix[0] + (b - lo) * stride;
            // SAFETY: the contract above for output columns b .. e (a
            // sub-range of lo .. hi, whose first reads input column ixb);
            // the window covers exactly the pixels the three taps read. (No
            // closure here: a closure would not inherit the caller's target
            // features.)
            unsafe {
                let mut c = 0;
                // At stride 2 with 16 lanes, whole 256-byte pieces of a pixel
                // (4 vectors: 12 accumulators, a 12-vector window, 4 gradient
                // vectors): the input row, which a stride-2 pass reads from
                // memory, streams in one walk per 64 channels instead of two
                // interleaved half-walks. Measured 5-10% faster on 112x112x64
                // (both gradients 11-15%); at stride 1 the in-cache layers lose
                // 5-10%, so they keep two vectors.
                while l >= 16 && !s1 && c + 4 * l <= ce {
                    taps_slide_block::<S, 4, 2>(isa, x, gy, b, e, ixb, ce, c, acc);
                    c += 4 * l;
                }
                // At stride 2 with 8 lanes (AVX2, and the portable level),
                // 128-byte pieces of a pixel (two lines per visit), as the
                // stride-2 forward takes them: 12 accumulators and 4
                // gradient vectors fill AVX2's 16 registers, so no window;
                // each input vector is loaded where it is used (16 loads
                // for 12 FMAs, against 6 for 6). The same sums in the same
                // order as the sliding form. Batch 8, 2 threads, four
                // alternated rounds on the Zen 3: 112x112x64 backward-filter
                // 2.06-2.74 -> 1.56-2.14 ms, both gradients 2.70-4.03 ->
                // 2.41-3.39; in the cache (batch 1, one thread) the same.
                // At stride 1 the in-cache layers lost 5-10% and
                // 112x112x32 gained 8-19%, with no direction on forward
                // then both gradients, so stride 1 keeps the sliding two
                // vectors (docs/ALGORITHMS.md, session 28).
                while l < 16 && !s1 && c + 4 * l <= ce {
                    taps_dot_block::<S, 3, 4>(isa, x, gy, b, e, [ixb, ixb + 1, ixb + 2], xstep, ce, c, acc);
                    c += 4 * l;
                }
                while c + 2 * l <= ce {
                    if s1 {
                        taps_slide_block::<S, 2, 1>(isa, x, gy, b, e, ixb, ce, c, acc)
                    } else {
                        taps_slide_block::<S, 2, 2>(isa, x, gy, b, e, ixb, ce, c, acc)
                    }
                    c += 2 * l;
                }
                while c + l <= ce {
                    if s1 {
                        taps_slide_block::<S, 1, 1>(isa, x, gy, b, e, ixb, ce, c, acc)
                    } else {
                        taps_slide_block::<S, 1, 2>(isa, x, gy, b, e, ixb, ce, c, acc)
                    }
                    c += l;
                }
                while c < ce {
                    if s1 {
                        taps_slide_block::<Scalar, 1, 1>(isa.scalar(), x, gy, b, e, ixb, ce, c, acc)
                    } else {
                        taps_slide_block::<Scalar, 1, 2>(isa.scalar(), x, gy, b, e, ixb, ce, c, acc)
                    }
                    c += 1;
                }
            }
            b = e;
        }
        return;
    }
    // SAFETY: the contract above.
    unsafe {
        let mut c = 0;
        while c + 2 * l <= ce {
            taps_dot_block::<S, KT, 2>(isa, x, gy, lo, hi, ix, xstep, ce, c, acc);
            c += 2 * l;
        }
        while c + l <= ce {
            taps_dot_block::<S, KT, 1>(isa, x, gy, lo, hi, ix, xstep, ce, c, acc);
            c += l;
        }
        while c < ce {
            taps_dot_block::<Scalar, KT, 1>(isa.scalar(), x, gy, lo, hi, ix, xstep, ce, c, acc);
            c += 1;
        }
    }
}

/// Lanes `c .. c + U * LANES` of [`taps_dot`]: `KT x U` accumulators.
///
/// # Safety
///
/// As [`taps_dot`]; `c + U * LANES <= ce`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn taps_dot_block<S: Isa, const KT: usize, const U: usize>(
    isa: S,
    x: *const f32,
    gy: *const f32,
    lo: usize,
    hi: usize,
    ix: [usize; KT],
    xstep: usize,
    ce: usize,
    c: usize,
    acc: *mut f32,
) {
    let l = S::LANES;
    // SAFETY: the contract of `taps_dot`.
    unsafe {
        let mut a = [[isa.zero(); U]; KT];
        let xp: [*const f32; KT] = std::array::from_fn(|k| x.add(ix[k] * ce + c));
        for (i, ox) in (lo..hi).enumerate() {
            let gp = gy.add(ox * ce + c);
            let mut g = [isa.zero(); U];
            for (u, g) in g.iter_mut().enumerate() {
                *g = isa.load(gp.add(u * l));
            }
            for (k, a) in a.iter_mut().enumerate() {
                let p = xp[k].add(i * xstep);
                for (u, a) in a.iter_mut().enumerate() {
                    *a = isa.load(p.add(u * l)).mul_add(g[u], *a);
                }
            }
        }
        for (k, a) in a.iter().enumerate() {
            for (u, a) in a.iter().enumerate() {
                let p = acc.add(k * ce + c + u * l);
                a.add(isa.load(p)).store(p);
            }
        }
    }
}

/// [`taps_dot_block`] for three taps reading input columns `ix0 + j`
/// (`j < 3`) of output column `lo`, at stride `SS`: the three input vectors
/// an output column needs stay in registers as a window that slides by
/// `SS` columns, so each output column loads its gradient and `SS` new
/// input vectors (2 or 3 loads per lane block where [`taps_dot_block`]
/// makes 4). The sums are the same, in the same order.
///
/// # Safety
///
/// As [`taps_dot`], with `ix = [ix0, ix0 + 1, ix0 + 2]` and `xstep = SS * ce`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn taps_slide_block<S: Isa, const U: usize, const SS: usize>(
    isa: S,
    x: *const f32,
    gy: *const f32,
    lo: usize,
    hi: usize,
    ix0: usize,
    ce: usize,
    c: usize,
    acc: *mut f32,
) {
    let l = S::LANES;
    if lo >= hi {
        return;
    }
    // SAFETY: the contract of `taps_dot`: input columns ix0 + i * SS + j
    // (i < hi - lo, j < 3) are inside the row; no load past the last one.
    unsafe {
        let mut a = [[isa.zero(); U]; 3];
        let xp = x.add(ix0 * ce + c);
        let mut win = [[isa.zero(); U]; 3];
        for (j, v) in win.iter_mut().enumerate() {
            for (u, v) in v.iter_mut().enumerate() {
                *v = isa.load(xp.add(j * ce + u * l));
            }
        }
        let n = hi - lo;
        for i in 0..n {
            let gp = gy.add((lo + i) * ce + c);
            let mut g = [isa.zero(); U];
            for (u, g) in g.iter_mut().enumerate() {
                *g = isa.load(gp.add(u * l));
            }
            for (k, a) in a.iter_mut().enumerate() {
                for (u, a) in a.iter_mut().enumerate() {
                    *a = win[k][u].mul_add(g[u], *a);
                }
            }
            if i + 1 < n {
                for j in 0..3 {
                    if j + SS < 3 {
                        win[j] = win[j + SS];
                    } else {
                        for (u, v) in win[j].iter_mut().enumerate() {
                            *v = isa.load(xp.add(((i + 1) * SS + j) * ce + u * l));
                        }
                    }
                }
            }
        }
        for (k, a) in a.iter().enumerate() {
            for (u, a) in a.iter().enumerate() {
                let p = acc.add(k * ce + c + u * l);
                a.add(isa.load(p)).store(p);
            }
        }
    }
}

/// `acc[c] += sum_{ox in lo..hi} x[ix0 + (ox - lo) * stride, c] * gy[ox, c]`.
///
/// # Safety
///
/// Every addressed pixel is inside `x` and `gy` (rows of `ce` floats per
/// pixel); `acc` valid for `ce` reads and writes.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn tap_dot<S: Isa>(
    isa: S,
    x: *const f32,
    gy: *const f32,
    lo: usize,
    hi: usize,
    ix0: usize,
    stride: usize,
    ce: usize,
    acc: *mut f32,
) {
    let l = S::LANES;
    let xstep = stride * ce;
    // SAFETY: the contract above.
    unsafe {
        let mut c = 0;
        while c + 4 * l <= ce {
            tap_dot_block::<S, 4>(isa, x, gy, lo, hi, ix0, xstep, ce, c, acc);
            c += 4 * l;
        }
        while c + l <= ce {
            tap_dot_block::<S, 1>(isa, x, gy, lo, hi, ix0, xstep, ce, c, acc);
            c += l;
        }
        for c in c..ce {
            let mut a = *acc.add(c);
            for (i, ox) in (lo..hi).enumerate() {
                a += *x.add(ix0 * ce + i * xstep + c) * *gy.add(ox * ce + c);
            }
            *acc.add(c) = a;
        }
    }
}

/// Lanes `c .. c + U * LANES` of [`tap_dot`].
///
/// # Safety
///
/// As [`tap_dot`]; `c + U * LANES <= ce`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn tap_dot_block<S: Isa, const U: usize>(
    isa: S,
    x: *const f32,
    gy: *const f32,
    lo: usize,
    hi: usize,
    ix0: usize,
    xstep: usize,
    ce: usize,
    c: usize,
    acc: *mut f32,
) {
    let l = S::LANES;
    // SAFETY: the contract of `tap_dot`.
    unsafe {
        let mut a = [isa.zero(); U];
        for (u, a) in a.iter_mut().enumerate() {
            *a = isa.load(acc.add(c + u * l));
        }
        for (i, ox) in (lo..hi).enumerate() {
            let xp = x.add(ix0 * ce + i * xstep + c);
            let gp = gy.add(ox * ce + c);
            for (u, a) in a.iter_mut().enumerate() {
                *a = isa.load(xp.add(u * l)).mul_add(isa.load(gp.add(u * l)), *a);
            }
        }
        for (u, a) in a.iter().enumerate() {
            a.store(acc.add(c + u * l));
        }
    }
}
