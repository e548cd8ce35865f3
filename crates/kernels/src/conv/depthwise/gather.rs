//! The depthwise gather: one destination row at a time, every destination
//! pixel the sum of its `(row tap) x (column tap)` source pixels times the
//! matching filter vector, channels on the vector lanes. The forward pass
//! and backward-data pass are both this gather, with different tap tables
//! (see the module doc of [`super`]).

use super::TapTable;
use crate::arch::{scratch_f32_task, FtzGuard, SendPtr, Slot};
#[cfg(target_arch = "x86_64")]
use crate::arch::{Avx2, Avx512};
use crate::arch::{Isa, Token, Vf32};
use rayon::prelude::*;

/// One gather call: `dst[n, r, p, :] = bias + sum_{(ky, sr) in rows[r]}
/// sum_{(kx, sc) in cols[p]} src[n, sr, sc, :] * filt[ky, kx, :]` over `ce`
/// lanes. With `expand > 1`, `src` holds `ce / expand` channels and each is
/// repeated `expand` times (the forward pass of a channel multiplier); with
/// `reduce > 1`, `dst` holds `ce / reduce` channels, each the sum of
/// `reduce` consecutive lanes (its backward-data pass).
pub(super) struct Gather<'a> {
    /// Batch size.
    pub n: usize,
    /// The whole source batch, `[n, src_h, src_w, src_c]`.
    pub src: &'a [f32],
    /// `(src_h, src_w, src_c)`.
    pub src_dims: (usize, usize, usize),
    /// Source channel repetition (1 = none).
    pub expand: usize,
    /// The destination batch, `[n, dst_h, dst_w, dst_c]`, written by the tasks.
    pub dst: SendPtr<f32>,
    /// `(dst_h, dst_w, dst_c)`.
    pub dst_dims: (usize, usize, usize),
    /// Destination lane reduction (1 = none).
    pub reduce: usize,
    /// Lanes: `c_out` of the convolution.
    pub ce: usize,
    /// Filter width (the filter is `[kh, kw, ce]`).
    pub kw: usize,
    /// The filter.
    pub filt: &'a [f32],
    /// Optional bias `[ce]` (forward only).
    pub bias: Option<&'a [f32]>,
    /// Fused relu (forward only).
    pub relu: bool,
    /// Per destination row: the `(ky, source row)` pairs.
    pub rows: TapTable<'a>,
    /// Per destination column: the `(kx, source column)` pairs.
    pub cols: TapTable<'a>,
    /// Destination rows per task.
    pub block: usize,
}

impl Gather<'_> {
    /// Number of tasks: `n * ceil(dst_h / block)`.
    pub fn tasks(&self) -> usize {
        self.n * self.dst_dims.0.div_ceil(self.block)
    }
}

/// Runs every task of `g` on the rayon pool at `level`.
///
/// The caller guarantees `g` is consistent: `src` and `filt` hold the
/// elements the dimensions say, `dst` points to `n * dst_h * dst_w * dst_c`
/// writable floats, and every table entry is inside its axis.
pub(super) fn run(token: Token, g: &Gather) {
    let buf_max = (0..g.dst_dims.0.div_ceil(g.block)).map(|b| buf_len(g, b * g.block)).max().unwrap_or(0);
    (0..g.tasks()).into_par_iter().for_each(|t| {
        let _ftz = FtzGuard::new();
        match token {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the token proves AVX-512F/AVX2/FMA;
            // `g` is consistent (the caller's contract above).
            Token::Avx512(isa) => unsafe { task_avx512(isa, g, t, buf_max) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Token::Avx2(isa) => unsafe { task_avx2(isa, g, t, buf_max) },
            // SAFETY: `g` is consistent.
            Token::Portable(isa) => unsafe { task(isa, g, t, buf_max) },
        }
    });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn task_avx512(isa: Avx512, g: &Gather, t: usize, buf_max: usize) {
    // SAFETY: forwarded from `run`.
    unsafe { task::<_>(isa, g, t, buf_max) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn task_avx2(isa: Avx2, g: &Gather, t: usize, buf_max: usize) {
    // SAFETY: forwarded from `run`.
    unsafe { task::<_>(isa, g, t, buf_max) }
}

/// Source rows `lo .. hi` read by the destination rows `r0 .. r0 + block`
/// (clipped to the image); `lo >= hi` when they read none.
fn src_rows(g: &Gather, r0: usize) -> (usize, usize) {
    let r1 = (r0 + g.block).min(g.dst_dims.0);
    let mut lo = usize::MAX;
    let mut hi = 0;
    for r in r0..r1 {
        for p in g.rows.taps(r).chunks_exact(2) {
            lo = lo.min(p[1] as usize);
            hi = hi.max(p[1] as usize + 1);
        }
    }
    (lo, hi)
}

/// Scratch floats the task of the block starting at row `r0` needs.
fn buf_len(g: &Gather, r0: usize) -> usize {
    let (lo, hi) = src_rows(g, r0);
    let expanded_len = if g.expand > 1 && lo < hi { (hi - lo) * g.src_dims.1 * g.ce } else { 0 };
    let reduced_len = if g.reduce > 1 { g.dst_dims.1 * g.ce } else { 0 };
    // Expansion (forward) and reduction (backward-data) never meet in one call.
    expanded_len.max(reduced_len)
}

/// Task `t`: destination rows `r0 .. r1` of one image. `buf_max` is the
/// largest [`buf_len`] of any task of the call (its scratch is sized to it
/// on first touch, whichever task a worker happens to run first).
///
/// # Safety
///
/// `g` is consistent (see [`run`]); no other task writes these rows.
#[inline(always)]
unsafe fn task<S: Isa>(isa: S, g: &Gather, t: usize, buf_max: usize) {
    let (sh, sw, sc) = g.src_dims;
    let (dh, dw, dc) = g.dst_dims;
    let ce = g.ce;
    let bpi = dh.div_ceil(g.block);
    let (n, r0) = (t / bpi, t % bpi * g.block);
    let r1 = (r0 + g.block).min(dh);
    let img = &g.src[n * sh * sw * sc..][..sh * sw * sc];
    // The source rows this task reads, repeated per lane if expanding.
    let (lo, hi) = src_rows(g, r0);
    let expanded_len = if g.expand > 1 && lo < hi { (hi - lo) * sw * ce } else { 0 };
    let mut buf = scratch_f32_task(Slot::Column, buf_len(g, r0), buf_max);
    let (src, row0) = if expanded_len > 0 {
        let m = g.expand;
        for (d, s) in buf[..expanded_len].chunks_exact_mut(m).zip(img[lo * sw * sc..hi * sw * sc].iter()) {
            d.fill(*s);
        }
        (buf.as_ptr(), lo)
    } else {
        (img.as_ptr(), 0)
    };
    let bias = g.bias.map(|b| b.as_ptr());
    for r in r0..r1 {
        // SAFETY: row r of image n is inside dst and owned by this task.
        let dst_row = unsafe { g.dst.get().add((n * dh + r) * dw * dc) };
        let target = if g.reduce > 1 { buf.as_mut_ptr() } else { dst_row };
        // SAFETY: every source row and column in the tables is inside the
        // (expanded) source, whose rows are sw * ce floats (without
        // expansion the source has ce channels); the filter holds kh * kw * ce floats; target
        // holds dw * ce floats (the reduce buffer or the dst row, dc == ce).
        unsafe {
            gather_row::<S>(
                isa,
                src,
                sw * ce,
                row0,
                ce,
                g.kw,
                g.rows.taps(r),
                &g.cols,
                g.filt.as_ptr(),
                bias,
                g.relu,
                target,
                dw,
            )
        };
        if g.reduce > 1 {
            let m = g.reduce;
            // SAFETY: dst_row holds dw * dc floats, owned by this task.
            let out = unsafe { std::slice::from_raw_parts_mut(dst_row, dw * dc) };
            for (o, lanes) in out.iter_mut().zip(buf[..dw * ce].chunks_exact(m)) {
                *o = lanes.iter().sum();
            }
        }
    }
}

/// Gathers one destination row of `dst_w` pixels of `ce` lanes.
///
/// # Safety
///
/// `src` row `sr - row0` (row stride `row_stride`) holds every column the
/// tables name, `filt` is `[kh, kw, ce]`, `bias` (if any) `[ce]`, `dst`
/// valid for `dst_w * ce` writes.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn gather_row<S: Isa>(
    isa: S,
    src: *const f32,
    row_stride: usize,
    row0: usize,
    ce: usize,
    kw: usize,
    row_taps: &[isize],
    cols: &TapTable,
    filt: *const f32,
    bias: Option<*const f32>,
    relu: bool,
    dst: *mut f32,
    dst_w: usize,
) {
    let l = S::LANES;
    for p in 0..dst_w {
        let col_taps = cols.taps(p);
        let px = Pixel { src, row_stride, row0, ce, kw, row_taps, col_taps, filt, bias, relu };
        // SAFETY: pixel p of dst holds ce floats; the blocks stay below ce.
        unsafe {
            let out = dst.add(p * ce);
            let mut c = 0;
            while c + 4 * l <= ce {
                px.block::<S, 4>(isa, c, out);
                c += 4 * l;
            }
            while c + l <= ce {
                px.block::<S, 1>(isa, c, out);
                c += l;
            }
            for c in c..ce {
                px.scalar(c, out);
            }
        }
    }
}

/// One destination pixel's inputs (see [`gather_row`]).
struct Pixel<'a> {
    src: *const f32,
    row_stride: usize,
    row0: usize,
    ce: usize,
    kw: usize,
    row_taps: &'a [isize],
    col_taps: &'a [isize],
    filt: *const f32,
    bias: Option<*const f32>,
    relu: bool,
}

impl Pixel<'_> {
    /// Lanes `c .. c + U * LANES` of the pixel into `out`.
    ///
    /// # Safety
    ///
    /// As [`gather_row`]; `c + U * LANES <= ce`.
    #[inline(always)]
    unsafe fn block<S: Isa, const U: usize>(&self, isa: S, c: usize, out: *mut f32) {
        let l = S::LANES;
        let mut acc = [isa.zero(); U];
        // SAFETY: every address is inside the buffers by the
        // contract of `gather_row` and `c + U * l <= ce`.
        unsafe {
            if let Some(b) = self.bias {
                for (u, a) in acc.iter_mut().enumerate() {
                    *a = isa.load(b.add(c + u * l));
                }
            }
            for rt in self.row_taps.chunks_exact(2) {
                let srow = self.src.add((rt[1] as usize - self.row0) * self.row_stride + c);
                let frow = self.filt.add(rt[0] as usize * self.kw * self.ce + c);
                for ct in self.col_taps.chunks_exact(2) {
                    let xp = srow.add(ct[1] as usize * self.ce);
                    let wp = frow.add(ct[0] as usize * self.ce);
                    for (u, a) in acc.iter_mut().enumerate() {
                        *a = isa.load(xp.add(u * l)).mul_add(isa.load(wp.add(u * l)), *a);
                    }
                }
            }
            for (u, a) in acc.iter().enumerate() {
                let v = if self.relu { a.max(isa.zero()) } else { *a };
                v.store(out.add(c + u * l));
            }
        }
    }

    /// Lane `c` alone (the tail below one vector).
    ///
    /// # Safety
    ///
    /// As [`gather_row`]; `c < ce`.
    #[inline(always)]
    unsafe fn scalar(&self, c: usize, out: *mut f32) {
        // SAFETY: as `block`, one lane.
        unsafe {
            let mut a = self.bias.map_or(0.0, |b| *b.add(c));
            for rt in self.row_taps.chunks_exact(2) {
                let srow = self.src.add((rt[1] as usize - self.row0) * self.row_stride + c);
                let frow = self.filt.add(rt[0] as usize * self.kw * self.ce + c);
                for ct in self.col_taps.chunks_exact(2) {
                    a += *srow.add(ct[1] as usize * self.ce) * *frow.add(ct[0] as usize * self.ce);
                }
            }
            *out.add(c) = if self.relu { a.max(0.0) } else { a };
        }
    }
}
