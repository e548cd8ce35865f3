//! The depthwise gather: one destination row at a time, every destination
//! pixel the sum of its `(row tap) x (column tap)` source pixels times the
//! matching filter vector, channels on the vector lanes. The forward pass
//! and backward-data pass are both this gather, with different tap tables
//! (see the module doc of [`super`]).

use super::TapTable;
use crate::arch::par::par_tasks;
use crate::arch::{scratch_f32_task, store_fence, FtzGuard, SendPtr, Slot};
#[cfg(target_arch = "x86_64")]
use crate::arch::{Avx2, Avx512};
use crate::arch::{Isa, Scalar, Token, Vf32};

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
    /// The destination columns as runs, `(start, len)` pairs covering every
    /// column once (see [`super::column_runs`]).
    pub runs: &'a [isize],
    /// `(dstep, sstep)`: run members are `dstep` destination columns apart
    /// and read sources `sstep` columns apart.
    pub steps: (usize, usize),
    /// Destination rows per task.
    pub block: usize,
    /// Backward-data at stride 2 of an undilated 3-wide filter: the
    /// interior of every destination row as [`Pairs`] (those columns are
    /// in no run), or `None`.
    pub pairs: Option<Pairs>,
    /// Backward-data through a relu: the destination-shaped output of that
    /// relu. Each destination row is gathered into scratch, then stored as
    /// [`Vf32::relu_mask`] of it (kept where the relu output is positive, 0
    /// elsewhere), so no separate pass over the gradient is needed. `None`
    /// otherwise.
    pub mask: Option<&'a [f32]>,
    /// Write the destination with non-temporal stores ([`Vf32::stream`]):
    /// set only where every vector store lands on a vector boundary (see
    /// [`super::stream_dst`]).
    pub stream: bool,
}

/// The interior of a backward-data row at stride 2 (3-wide filter,
/// undilated): destination columns `q .. q + 2 * len` as `len` pairs, pair
/// `i` being column `q + 2i`, which reads source column `g + i` through tap
/// 0 and `g + i - 1` through tap 2, and column `q + 2i + 1`, which reads
/// `g + i` through tap 1 (see [`super::pair_range`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Pairs {
    /// First destination column.
    pub q: usize,
    /// Source column read by tap 0 of column `q` (`g >= 1`).
    pub g: usize,
    /// Number of pairs.
    pub len: usize,
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
    par_tasks(g.tasks(), |t| {
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
        if g.stream {
            store_fence();
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

/// Source rows `lo .. hi` read by the destination rows `r0 .. r1`
/// (clipped to the image); `lo >= hi` when they read none.
fn src_rows(g: &Gather, r0: usize, r1: usize) -> (usize, usize) {
    let mut lo = usize::MAX;
    let mut hi = 0;
    for r in r0..r1.min(g.dst_dims.0) {
        for p in g.rows.taps(r).chunks_exact(2) {
            lo = lo.min(p[1] as usize);
            hi = hi.max(p[1] as usize + 1);
        }
    }
    (lo, hi)
}

/// Scratch floats the task of the block starting at row `r0` needs.
fn buf_len(g: &Gather, r0: usize) -> usize {
    let (lo, hi) = src_rows(g, r0, r0 + g.block);
    let expanded_len = if g.expand > 1 && lo < hi { (hi - lo) * g.src_dims.1 * g.ce } else { 0 };
    expanded_len.max(staged_len(g))
}

/// Scratch floats [`rows`] needs for a destination row staged before its
/// store: the lane reduction or the relu mask (0 without either).
pub(super) fn staged_len(g: &Gather) -> usize {
    if staged(g) {
        g.dst_dims.1 * g.ce
    } else {
        0
    }
}

/// Whether [`rows`] gathers each destination row into scratch first (a
/// lane reduction or a relu mask follows).
fn staged(g: &Gather) -> bool {
    g.reduce > 1 || g.mask.is_some()
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
    let bpi = g.dst_dims.0.div_ceil(g.block);
    let (n, r0) = (t / bpi, t % bpi * g.block);
    let r1 = (r0 + g.block).min(g.dst_dims.0);
    let mut buf = scratch_f32_task(Slot::Column, buf_len(g, r0), buf_max);
    // SAFETY: forwarded; `buf` holds `buf_len(g, r0)` floats.
    unsafe { rows::<S>(isa, g, n, r0, r1, &mut buf) };
}

/// Destination rows `r0 .. r1` of image `n`. `buf` is scratch of at least
/// the expanded source rows (forward with a multiplier: `(hi - lo) *
/// src_w * ce` for the source rows `lo .. hi` these rows read) and
/// [`staged_len`] floats.
///
/// # Safety
///
/// `g` is consistent (see [`run`]); no other thread writes these rows
/// meanwhile.
#[inline(always)]
pub(super) unsafe fn rows<S: Isa>(isa: S, g: &Gather, n: usize, r0: usize, r1: usize, buf: &mut [f32]) {
    let (sh, sw, sc) = g.src_dims;
    let (dh, dw, dc) = g.dst_dims;
    let ce = g.ce;
    let img = &g.src[n * sh * sw * sc..][..sh * sw * sc];
    // The source rows these rows read, repeated per lane if expanding.
    let (lo, hi) = src_rows(g, r0, r1);
    let expanded_len = if g.expand > 1 && lo < hi { (hi - lo) * sw * ce } else { 0 };
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
        let target = if staged(g) { buf.as_mut_ptr() } else { dst_row };
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
                g.runs,
                g.steps,
                g.pairs,
                g.stream && !staged(g),
                g.filt.as_ptr(),
                bias,
                g.relu,
                target,
            )
        };
        // The relu output row matching dst_row (same offsets), if masking.
        let mask_row = g.mask.map(|m| &m[(n * dh + r) * dw * dc..][..dw * dc]);
        if g.reduce > 1 {
            let m = g.reduce;
            // SAFETY: dst_row holds dw * dc floats, owned by this task.
            let out = unsafe { std::slice::from_raw_parts_mut(dst_row, dw * dc) };
            let sums = out.iter_mut().zip(buf[..dw * ce].chunks_exact(m));
            // Through a relu, each sum is masked as it is stored (one pass
            // over the row, the same bits as masking it afterwards).
            match mask_row {
                Some(mask) => sums.zip(mask).for_each(|((o, lanes), &y)| *o = lanes.iter().sum::<f32>().relu_mask(y)),
                None => sums.for_each(|(o, lanes)| *o = lanes.iter().sum()),
            }
        } else if let Some(mask) = mask_row {
            // SAFETY: dst_row holds dw * dc floats (dc == ce), owned by this
            // task; buf holds the gathered row; streamed stores land on
            // vector boundaries (see `Gather::stream`).
            unsafe { masked_store::<S>(isa, &buf[..dw * dc], mask, dst_row, g.stream) };
        }
    }
}

/// `dst[i] = relu_mask(row[i], mask[i])` for the whole row, vector by
/// vector (streamed when `stream`), then lane by lane.
///
/// # Safety
///
/// `dst` is valid for `row.len()` writes (`mask` has that length too); when
/// streaming, `dst` is on a vector boundary and `row.len()` a multiple of
/// the vector length.
#[inline(always)]
unsafe fn masked_store<S: Isa>(isa: S, row: &[f32], mask: &[f32], dst: *mut f32, stream: bool) {
    let l = S::LANES;
    let mut i = 0;
    // SAFETY: i + l <= row.len() == mask.len(), and dst holds as many.
    unsafe {
        while i + l <= row.len() {
            let v = isa.load(row.as_ptr().add(i)).relu_mask(isa.load(mask.as_ptr().add(i)));
            if stream {
                v.stream(dst.add(i))
            } else {
                v.store(dst.add(i))
            }
            i += l;
        }
        for i in i..row.len() {
            *dst.add(i) = row[i].relu_mask(mask[i]);
        }
    }
}

/// Gathers one destination row of `ce` lanes per pixel, run by run.
///
/// `runs` holds `(start, len)` pairs: destination columns `start + t *
/// dstep` for `t < len`, whose taps are those of `start` with every source
/// column moved by `t * sstep` (see [`super::column_runs`]). Each run goes
/// in register tiles of several pixels (see [`Pixels::run`]); the columns
/// of `pairs`, if any, between the runs before and after them (see
/// [`Pixels::pair_run`]), so the row is written in column order.
///
/// # Safety
///
/// `src` row `sr - row0` (row stride `row_stride`) holds every column the
/// tables name (plus each run's shifts), `filt` is `[kh, kw, ce]`, `bias`
/// (if any) `[ce]`, `dst` valid for writes of every pixel the runs name
/// (`ce` floats each), and so are the columns `pairs` names.
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
    runs: &[isize],
    steps: (usize, usize),
    pairs: Option<Pairs>,
    stream: bool,
    filt: *const f32,
    bias: Option<*const f32>,
    relu: bool,
    dst: *mut f32,
) {
    let (dstep, sstep) = steps;
    let mut pairs = pairs;
    for run in runs.chunks_exact(2) {
        let (start, len) = (run[0] as usize, run[1] as usize);
        if let Some(pr) = pairs.filter(|pr| pr.q < start) {
            let px = Pixels {
                src,
                row_stride,
                row0,
                ce,
                kw,
                row_taps,
                col_taps: &[],
                filt,
                bias,
                relu,
                sstep,
                dstep,
                stream,
            };
            // SAFETY: the contract above, for the columns of `pairs`.
            unsafe { px.pair_run::<S>(isa, pr, dst) };
            pairs = None;
        }
        let col_taps = cols.taps(start);
        let px = Pixels { src, row_stride, row0, ce, kw, row_taps, col_taps, filt, bias, relu, sstep, dstep, stream };
        // SAFETY: the contract above, for every member of the run.
        unsafe {
            // The members the sliding tiles leave over (3 at most) go
            // through the same tiles as a run that cannot slide: several
            // vectors of lanes per pixel, independent FMA chains, where one
            // vector at a time was one 9-deep chain (single thread, batch
            // 1: 28x28x256 forward 0.108 -> 0.099 ms, backward-data 0.106
            // -> 0.100). One call site per tile shape, as every tile body
            // is inlined into this row loop.
            let done = match px.window(len) {
                Some(win) if sstep == 1 => px.slide_run::<S, 1>(isa, start, len, win, dst),
                Some(win) => px.slide_run::<S, 2>(isa, start, len, win, dst),
                None => 0,
            };
            if ce >= 4 * S::LANES {
                px.run::<S, 2, 4>(isa, start, done, len, dst)
            } else if ce >= 2 * S::LANES {
                px.run::<S, 4, 2>(isa, start, done, len, dst)
            } else {
                px.run::<S, 8, 1>(isa, start, done, len, dst)
            }
        }
    }
    if let Some(pr) = pairs {
        let px =
            Pixels { src, row_stride, row0, ce, kw, row_taps, col_taps: &[], filt, bias, relu, sstep, dstep, stream };
        // SAFETY: as above.
        unsafe { px.pair_run::<S>(isa, pr, dst) };
    }
}

/// Shortest run worth sliding tiles (a tile of 4 pixels).
const SLIDE_MIN: usize = 4;

/// One run's inputs (see [`gather_row`]).
struct Pixels<'a> {
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
    sstep: usize,
    dstep: usize,
    stream: bool,
}

impl Pixels<'_> {
    /// Members `t0 .. len` of the run from destination column `start`: tiles
    /// of `T` pixels times `U` vectors of lanes (`T * U` accumulators, 8
    /// independent FMA chains to hide the FMA latency at two FMAs per
    /// cycle), then single pixels. Each filter vector, loaded once per tap,
    /// serves `T` pixels. The caller takes 2 pixels x 4 vectors (128 bytes,
    /// two cache lines per pixel visit) when there are that many lanes:
    /// walking the pixels of a tile at one channel offset touches addresses
    /// `ce * 4` bytes apart, and the wider the piece of each pixel taken per
    /// visit, the closer the walk is to a sequential stream. Measured (CPU
    /// time per call, loaded machine, `examples/depthwise_timing.rs`):
    /// 112x112x64 stride 2 forward 1.7-2.1 ms with 2 x 4 against 3.2-4.0 ms
    /// with 4 x 2; 28x28x256 1.0-1.4 against 1.6-2.1 ms. The lanes left
    /// over go one vector, then one lane at a time.
    ///
    /// # Safety
    ///
    /// As [`gather_row`], for members `t0 .. len` of the run.
    #[inline(always)]
    unsafe fn run<S: Isa, const T: usize, const U: usize>(
        &self,
        isa: S,
        start: usize,
        t0: usize,
        len: usize,
        dst: *mut f32,
    ) {
        let l = S::LANES;
        let wide = self.ce - self.ce % (U * l);
        let one = self.ce - self.ce % l;
        let mut t = t0;
        // SAFETY: members t .. t + T (then t) are in the run; the lane
        // ranges stay below ce.
        unsafe {
            while t + T <= len {
                let p = self.start_col(start, t);
                self.tile::<S, T, U>(isa, t, p, (0, wide), dst);
                self.tile::<S, T, 1>(isa, t, p, (wide, one), dst);
                self.tile::<Scalar, T, 1>(isa.scalar(), t, p, (one, self.ce), dst);
                t += T;
            }
            while t < len {
                let p = self.start_col(start, t);
                self.tile::<S, 1, U>(isa, t, p, (0, wide), dst);
                self.tile::<S, 1, 1>(isa, t, p, (wide, one), dst);
                self.tile::<Scalar, 1, 1>(isa.scalar(), t, p, (one, self.ce), dst);
                t += 1;
            }
        }
    }

    /// The sliding window of a run, if its tiles can slide: three column
    /// taps reading three neighbouring source columns (a 3-wide filter row,
    /// undilated, in forward or backward-data order), members one
    /// destination column apart reading sources 1 or 2 columns apart, and
    /// at least [`SLIDE_MIN`] members. Returns `(first source column,
    /// [kx of the tap reading first + j for j in 0..3])`.
    #[inline(always)]
    fn window(&self, len: usize) -> Option<(usize, [usize; 3])> {
        if len < SLIDE_MIN || self.dstep != 1 || !(1..=2).contains(&self.sstep) || self.col_taps.len() != 6 {
            return None;
        }
        let first = self.col_taps.chunks_exact(2).map(|t| t[1]).min()? as usize;
        let mut kx = [usize::MAX; 3];
        for t in self.col_taps.chunks_exact(2) {
            let j = t[1] as usize - first;
            if j >= 3 || kx[j] != usize::MAX {
                return None;
            }
            kx[j] = t[0] as usize;
        }
        Some((first, kx))
    }

    /// The run from destination column `start` (`len` members, see
    /// [`Pixels::run`]) in sliding tiles: a tile of `T` neighbouring
    /// pixels reads, per filter row, the `(T - 1) * SS + 3` source pixels
    /// its three column taps cover, and each source vector, loaded once,
    /// goes into the accumulators of every pixel that reads it (with
    /// `SS = 1` a tile of 4 pixels loads 6 source vectors per filter row
    /// instead of 12, a tile of 8 loads 10 instead of 24). AVX-512 takes 4
    /// pixels x 2 vectors (one 128-byte piece of each pixel per visit, as
    /// [`Pixels::run`] explains); one vector per pixel takes 8 pixels, then
    /// 4. Returns the number of members done, from 0 on: the caller does
    /// the rest (3 at most) with [`Pixels::run`].
    ///
    /// # Safety
    ///
    /// As [`gather_row`]; `win` is [`Pixels::window`]'s answer and
    /// `SS == self.sstep`.
    #[inline(always)]
    unsafe fn slide_run<S: Isa, const SS: usize>(
        &self,
        isa: S,
        start: usize,
        len: usize,
        win: (usize, [usize; 3]),
        dst: *mut f32,
    ) -> usize {
        let l = S::LANES;
        let mut t = 0;
        // SAFETY: members t .. t + T are in the run; lane ranges stay below ce.
        unsafe {
            if l >= 16 && self.ce >= 2 * l {
                // AVX-512: 4 pixels x 2 vectors, 8 accumulators + 6 filter
                // + 2 source registers. 8 pixels (24 registers) measured no
                // better on the 112x112 layers (noisy, loaded machine).
                let wide = self.ce - self.ce % (2 * l);
                while t + 4 <= len {
                    self.slide::<S, 4, 2, SS>(isa, t, start + t, (0, wide), win, dst);
                    self.slide_tails::<S, 4, SS>(isa, t, start + t, wide, win, dst);
                    t += 4;
                }
            } else if self.ce >= 2 * l {
                // AVX2 (and the portable level's 8 lanes): 4 pixels x 2
                // vectors, tap by tap (see
                // [`Pixels::slide_taps`]). Two vectors take a whole 64-byte
                // line of each pixel per visit: with one vector (8 pixels)
                // every line was fetched twice, half used each time, and
                // evicted in between when the channels make the pixels 1-2
                // KiB apart (their lines share L1 sets), 2-4x slower at
                // batch 8. At stride 2 with four vectors of channels, 2
                // pixels x 4 vectors (two lines per visit): the stride-2
                // source row streams from memory, and 112x112x64 went
                // 2.4-2.65 -> 1.22-1.33 ms; at stride 1 the same tile was
                // slower on 112x112x32 (1.38-1.73 against 0.98-1.43). At
                // stride 1, 6 pixels x 2 vectors first: 12 FMA chains where
                // 8 left the two FMA pipes no slack (single thread, batch 1:
                // 112x112x32 forward and backward-data 0.195 -> 0.175 ms;
                // 28x28x256 and 14x14x512 unchanged).
                let wide = self.ce - self.ce % (2 * l);
                let wide4 = self.ce - self.ce % (4 * l);
                while SS == 2 && wide4 > 0 && t + 2 <= len {
                    self.slide_taps::<S, 2, 4, SS>(isa, t, start + t, (0, wide4), win, dst);
                    self.slide_tails::<S, 2, SS>(isa, t, start + t, wide4, win, dst);
                    t += 2;
                }
                while SS == 1 && t + 6 <= len {
                    self.slide_taps::<S, 6, 2, SS>(isa, t, start + t, (0, wide), win, dst);
                    self.slide_tails::<S, 6, SS>(isa, t, start + t, wide, win, dst);
                    t += 6;
                }
                while t + 4 <= len {
                    self.slide_taps::<S, 4, 2, SS>(isa, t, start + t, (0, wide), win, dst);
                    self.slide_tails::<S, 4, SS>(isa, t, start + t, wide, win, dst);
                    t += 4;
                }
            } else {
                // One vector: 8 accumulators + 3 filter + 1 source register
                // (of 16 on AVX2).
                while t + 8 <= len {
                    self.slide_tails::<S, 8, SS>(isa, t, start + t, 0, win, dst);
                    t += 8;
                }
                while t + 4 <= len {
                    self.slide_tails::<S, 4, SS>(isa, t, start + t, 0, win, dst);
                    t += 4;
                }
            }
        }
        t
    }

    /// Lanes `c0 ..` of a sliding tile: one vector at a time, then one lane.
    ///
    /// # Safety
    ///
    /// As [`Pixels::slide`].
    #[inline(always)]
    unsafe fn slide_tails<S: Isa, const T: usize, const SS: usize>(
        &self,
        isa: S,
        t: usize,
        p: usize,
        c0: usize,
        win: (usize, [usize; 3]),
        dst: *mut f32,
    ) {
        let one = self.ce - self.ce % S::LANES;
        // SAFETY: forwarded.
        unsafe {
            self.slide::<S, T, 1, SS>(isa, t, p, (c0, one), win, dst);
            self.slide::<Scalar, T, 1, SS>(isa.scalar(), t, p, (one, self.ce), win, dst);
        }
    }

    /// `T` pixels from member `t` (destination column `p`), lanes `c0 ..
    /// c1` in blocks of `U` vectors, as a sliding window: see
    /// [`Pixels::slide_run`]. Source column `win.0 + t * SS + j` (`j < 3`)
    /// is read by tap `win.1[j]` of member `t`.
    ///
    /// # Safety
    ///
    /// As [`Pixels::tile`]; `win` is [`Pixels::window`]'s answer and
    /// `SS == self.sstep`.
    #[inline(always)]
    unsafe fn slide<S: Isa, const T: usize, const U: usize, const SS: usize>(
        &self,
        isa: S,
        t: usize,
        p: usize,
        lanes: (usize, usize),
        win: (usize, [usize; 3]),
        dst: *mut f32,
    ) {
        let l = S::LANES;
        let ce = self.ce;
        let (mut c, c_end) = lanes;
        let (first, kx) = win;
        let span = (T - 1) * SS + 3;
        // SAFETY: source columns first + t * SS + j for j < span are the
        // taps of members t .. t + T (each reads first + its shift + 0..3,
        // inside the row by the tap tables); destination pixels p .. p + T
        // are members t .. t + T; c + U * l <= c_end <= ce.
        unsafe {
            while c + U * l <= c_end {
                let mut acc = self.tile_start::<S, T, U>(isa, c);
                for rt in self.row_taps.chunks_exact(2) {
                    let srow = self.src.add((rt[1] as usize - self.row0) * self.row_stride + c);
                    let frow = self.filt.add(rt[0] as usize * self.kw * ce + c);
                    let mut w = [[isa.zero(); U]; 3];
                    for (j, w) in w.iter_mut().enumerate() {
                        for (u, v) in w.iter_mut().enumerate() {
                            *v = isa.load(frow.add(kx[j] * ce + u * l));
                        }
                    }
                    let xp = srow.add((first + t * SS) * ce);
                    for j in 0..span {
                        let mut x = [isa.zero(); U];
                        for (u, v) in x.iter_mut().enumerate() {
                            *v = isa.load(xp.add(j * ce + u * l));
                        }
                        for (i, a) in acc.iter_mut().enumerate() {
                            let k = j.wrapping_sub(i * SS);
                            if k < 3 {
                                for (u, a) in a.iter_mut().enumerate() {
                                    *a = x[u].mul_add(w[k][u], *a);
                                }
                            }
                        }
                    }
                }
                self.tile_put::<S, T, U>(isa, &acc, p, c, dst);
                c += U * l;
            }
        }
    }

    /// [`Pixels::slide`] with the filter taps outermost: per filter row,
    /// each of the three column taps is loaded once (`U` registers) and
    /// multiplied into the `T` pixels with their source vectors read from
    /// memory (folded into the FMA), so a tile needs `T * U + U` vector
    /// registers instead of `T * U + 3 * U + U`: 4 x 2 fits AVX2's 16
    /// without spilling (the window form spilled 3-5 values per filter row
    /// at 4 x 2 and some at 3 x 2; one thread, batch 1, 28x28x16 and
    /// 28x28x256 forward 0.0136 and 0.150 ms with the 3 x 2 window against
    /// 0.0099-0.0111 and 0.136 tap by tap). Each accumulator takes its FMAs in
    /// the same order as in [`Pixels::slide`] (filter row, then column tap),
    /// so the two give the same bits. Each column tap's source pointer goes
    /// through [`std::hint::black_box`]: without it LLVM sees that pixel `i`
    /// at tap `j` and pixel `i + 1` at tap `j - 1` read one address, merges
    /// the loads into the window form and spills (81 ymm stack moves in the
    /// AVX2 task at 6 x 2, against 14 with the barrier; the 6 x 2 tile
    /// gained nothing without it).
    ///
    /// # Safety
    ///
    /// As [`Pixels::slide`].
    #[inline(always)]
    unsafe fn slide_taps<S: Isa, const T: usize, const U: usize, const SS: usize>(
        &self,
        isa: S,
        t: usize,
        p: usize,
        lanes: (usize, usize),
        win: (usize, [usize; 3]),
        dst: *mut f32,
    ) {
        let l = S::LANES;
        let ce = self.ce;
        let (mut c, c_end) = lanes;
        let (first, kx) = win;
        // SAFETY: as in `slide`: member t + i reads source columns
        // first + (t + i) * SS + j (j < 3), inside the row by the tap
        // tables; destination pixels p .. p + T are members t .. t + T;
        // c + U * l <= c_end <= ce.
        unsafe {
            while c + U * l <= c_end {
                let mut acc = self.tile_start::<S, T, U>(isa, c);
                for rt in self.row_taps.chunks_exact(2) {
                    let srow = self.src.add((rt[1] as usize - self.row0) * self.row_stride + c);
                    let frow = self.filt.add(rt[0] as usize * self.kw * ce + c);
                    let xp = srow.add((first + t * SS) * ce);
                    for (j, &k) in kx.iter().enumerate() {
                        let mut w = [isa.zero(); U];
                        for (u, v) in w.iter_mut().enumerate() {
                            *v = isa.load(frow.add(k * ce + u * l));
                        }
                        let xj = std::hint::black_box(xp.add(j * ce));
                        for (i, a) in acc.iter_mut().enumerate() {
                            let x = xj.add(i * SS * ce);
                            for (u, a) in a.iter_mut().enumerate() {
                                *a = isa.load(x.add(u * l)).mul_add(w[u], *a);
                            }
                        }
                    }
                }
                self.tile_put::<S, T, U>(isa, &acc, p, c, dst);
                c += U * l;
            }
        }
    }

    /// The accumulators a `T x U` tile at lanes `c ..` starts from: the
    /// bias of those lanes in every pixel, or zero.
    ///
    /// # Safety
    ///
    /// With a bias, `c + U * LANES <= ce`.
    #[inline(always)]
    unsafe fn tile_start<S: Isa, const T: usize, const U: usize>(&self, isa: S, c: usize) -> [[S::V; U]; T] {
        let mut bv = [isa.zero(); U];
        if let Some(b) = self.bias {
            for (u, v) in bv.iter_mut().enumerate() {
                // SAFETY: the bias holds ce floats and c + U * LANES <= ce.
                *v = unsafe { isa.load(b.add(c + u * S::LANES)) };
            }
        }
        [bv; T]
    }

    /// Stores a `T x U` tile into destination pixels `p .. p + T`, lanes
    /// `c ..`, through the fused relu if there is one.
    ///
    /// # Safety
    ///
    /// As [`Pixels::put`] for every vector of those pixels and lanes.
    #[inline(always)]
    unsafe fn tile_put<S: Isa, const T: usize, const U: usize>(
        &self,
        isa: S,
        acc: &[[S::V; U]; T],
        p: usize,
        c: usize,
        dst: *mut f32,
    ) {
        for (i, a) in acc.iter().enumerate() {
            for (u, a) in a.iter().enumerate() {
                let v = if self.relu { a.max(isa.zero()) } else { *a };
                // SAFETY: the caller's contract.
                unsafe { self.put(v, dst.add((p + i) * self.ce + c + u * S::LANES)) };
            }
        }
    }

    /// The pairs of a stride-2 backward-data row (see [`Pairs`]) in
    /// sliding tiles: a tile of `T` pairs (`2T` destination pixels) reads,
    /// per filter row, the `T + 1` source pixels `g - 1 .. g + T`, each
    /// loaded once and multiplied into the (up to three) pixels that read
    /// it: 1.5 filter taps per destination pixel for one source load,
    /// where one pixel at a time loads a filter vector per tap. AVX-512
    /// takes 2 pairs x 2 vectors (4 pixels, one 128-byte piece of each per
    /// visit, as [`Pixels::slide_run`]), and so does AVX2 (a whole 64-byte
    /// line per visit; all 16 registers, a few spilled, still 4-5x faster
    /// than one vector at 64 channels on a Zen 3; the portable level's
    /// 8 lanes go the same way); below two vectors of channels one vector
    /// per pixel takes 4 pairs,
    /// then 2; pairs left over go one at a time.
    ///
    /// # Safety
    ///
    /// As [`gather_row`] for the columns of `pr`.
    #[inline(always)]
    unsafe fn pair_run<S: Isa>(&self, isa: S, pr: Pairs, dst: *mut f32) {
        let l = S::LANES;
        let mut i = 0;
        // SAFETY: pairs i .. i + T are in `pr`; lane ranges stay below ce.
        unsafe {
            if l >= 8 && self.ce >= 2 * l {
                let wide = self.ce - self.ce % (2 * l);
                while i + 2 <= pr.len {
                    self.pair_tile::<S, 2, 2>(isa, pr, i, (0, wide), dst);
                    self.pair_tails::<S, 2>(isa, pr, i, wide, dst);
                    i += 2;
                }
            } else {
                while i + 4 <= pr.len {
                    self.pair_tails::<S, 4>(isa, pr, i, 0, dst);
                    i += 4;
                }
                while i + 2 <= pr.len {
                    self.pair_tails::<S, 2>(isa, pr, i, 0, dst);
                    i += 2;
                }
            }
            while i < pr.len {
                self.pair_tails::<S, 1>(isa, pr, i, 0, dst);
                i += 1;
            }
        }
    }

    /// Lanes `c0 ..` of a pair tile: one vector at a time, then one lane.
    ///
    /// # Safety
    ///
    /// As [`Pixels::pair_tile`].
    #[inline(always)]
    unsafe fn pair_tails<S: Isa, const T: usize>(&self, isa: S, pr: Pairs, i: usize, c0: usize, dst: *mut f32) {
        let one = self.ce - self.ce % S::LANES;
        // SAFETY: forwarded.
        unsafe {
            self.pair_tile::<S, T, 1>(isa, pr, i, (c0, one), dst);
            self.pair_tile::<Scalar, T, 1>(isa.scalar(), pr, i, (one, self.ce), dst);
        }
    }

    /// Pairs `i .. i + T` of `pr`, lanes `c0 .. c1` in blocks of `U`
    /// vectors: source column `g + i - 1 + j` (`j <= T`) goes through tap 2
    /// into pixel `2j`, tap 0 into pixel `2j - 2` and tap 1 into pixel
    /// `2j - 1` of the tile, where those are inside it.
    ///
    /// # Safety
    ///
    /// As [`gather_row`] for the columns of pairs `i .. i + T` of `pr`
    /// (which read source columns `g + i - 1 .. g + i + T`); `c1 <= ce`.
    #[inline(always)]
    unsafe fn pair_tile<S: Isa, const T: usize, const U: usize>(
        &self,
        isa: S,
        pr: Pairs,
        i: usize,
        lanes: (usize, usize),
        dst: *mut f32,
    ) {
        let l = S::LANES;
        let ce = self.ce;
        let (mut c, c_end) = lanes;
        let p = pr.q + 2 * i;
        // SAFETY: source columns g + i - 1 + j (j <= T) are read by pairs
        // i .. i + T of `pr`, inside the row by the tap tables; destination
        // pixels p .. p + 2T are theirs; c + U * l <= c_end <= ce.
        unsafe {
            while c + U * l <= c_end {
                // acc[2k] is pixel 2k of the tile (taps 0 and 2), acc[2k + 1]
                // pixel 2k + 1 (tap 1); T is at most 4, so 2T <= 8.
                let mut acc = [[isa.zero(); U]; 8];
                for rt in self.row_taps.chunks_exact(2) {
                    let srow = self.src.add((rt[1] as usize - self.row0) * self.row_stride + c);
                    let frow = self.filt.add(rt[0] as usize * self.kw * ce + c);
                    let mut w = [[isa.zero(); U]; 3];
                    for (k, w) in w.iter_mut().enumerate() {
                        for (u, v) in w.iter_mut().enumerate() {
                            *v = isa.load(frow.add(k * ce + u * l));
                        }
                    }
                    let xp = srow.add((pr.g + i - 1) * ce);
                    for j in 0..=T {
                        let mut x = [isa.zero(); U];
                        for (u, v) in x.iter_mut().enumerate() {
                            *v = isa.load(xp.add(j * ce + u * l));
                        }
                        if j < T {
                            for (u, a) in acc[2 * j].iter_mut().enumerate() {
                                *a = x[u].mul_add(w[2][u], *a);
                            }
                        }
                        if j >= 1 {
                            for (u, a) in acc[2 * j - 2].iter_mut().enumerate() {
                                *a = x[u].mul_add(w[0][u], *a);
                            }
                            for (u, a) in acc[2 * j - 1].iter_mut().enumerate() {
                                *a = x[u].mul_add(w[1][u], *a);
                            }
                        }
                    }
                }
                for (k, a) in acc[..2 * T].iter().enumerate() {
                    for (u, a) in a.iter().enumerate() {
                        self.put(*a, dst.add((p + k) * ce + c + u * l));
                    }
                }
                c += U * l;
            }
        }
    }

    /// Stores `v` at `p`: streamed when the gather streams.
    ///
    /// # Safety
    ///
    /// `p` is valid for `V::LANES` writes; when streaming, on a vector
    /// boundary (which [`Gather::stream`] guarantees for every vector store).
    #[inline(always)]
    unsafe fn put<V: Vf32>(&self, v: V, p: *mut f32) {
        // SAFETY: forwarded.
        unsafe {
            if self.stream {
                v.stream(p)
            } else {
                v.store(p)
            }
        }
    }

    /// Destination column of member `t` of the run starting at `start`.
    #[inline(always)]
    fn start_col(&self, start: usize, t: usize) -> usize {
        start + t * self.dstep
    }

    /// `T` pixels of the run from member `t` on (destination column `p`),
    /// lanes `c0 .. c1` in blocks of `U` vectors (`c1 - c0` a multiple of
    /// `U * S::LANES`).
    ///
    /// # Safety
    ///
    /// As [`gather_row`]; members `t .. t + T` are in the run; `c1 <= ce`.
    #[inline(always)]
    unsafe fn tile<S: Isa, const T: usize, const U: usize>(
        &self,
        isa: S,
        t: usize,
        p: usize,
        lanes: (usize, usize),
        dst: *mut f32,
    ) {
        let l = S::LANES;
        let ce = self.ce;
        let (mut c, c_end) = lanes;
        let shift = t * self.sstep;
        let sstep = self.sstep * ce;
        // SAFETY: every address is inside the buffers by the contract of
        // `gather_row`: source columns `sc + shift + i * sstep` are the
        // taps of run members `t + i`, destination pixel `p + i * dstep`
        // is member `t + i`, and `c + l <= c1 <= ce`.
        unsafe {
            while c + U * l <= c_end {
                let mut acc = self.tile_start::<S, T, U>(isa, c);
                for rt in self.row_taps.chunks_exact(2) {
                    let srow = self.src.add((rt[1] as usize - self.row0) * self.row_stride + c);
                    let frow = self.filt.add(rt[0] as usize * self.kw * ce + c);
                    for ct in self.col_taps.chunks_exact(2) {
                        let wp = frow.add(ct[0] as usize * ce);
                        let mut w = [isa.zero(); U];
                        for (u, v) in w.iter_mut().enumerate() {
                            *v = isa.load(wp.add(u * l));
                        }
                        let xp = srow.add((ct[1] as usize + shift) * ce);
                        for (i, a) in acc.iter_mut().enumerate() {
                            for (u, a) in a.iter_mut().enumerate() {
                                *a = isa.load(xp.add(i * sstep + u * l)).mul_add(w[u], *a);
                            }
                        }
                    }
                }
                for (i, a) in acc.iter().enumerate() {
                    for (u, a) in a.iter().enumerate() {
                        let v = if self.relu { a.max(isa.zero()) } else { *a };
                        self.put(v, dst.add((p + i * self.dstep) * ce + c + u * l));
                    }
                }
                c += U * l;
            }
        }
    }
}
