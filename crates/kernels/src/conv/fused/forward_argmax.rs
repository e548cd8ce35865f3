//! The training forward of `conv + bias + activation + 2x2 max pool`: the
//! pooled map **and the argmax** the backward needs, in one pass, with no
//! map of the conv's output size (the first layer of the chapter's model,
//! whose conv output is four times its pooled output).
//!
//! # What it replaces
//!
//! The tape's unfused forward runs the `direct` convolution (bias and relu
//! fused), which writes the whole conv output (26x26x32 per image, 5.5 MB
//! at batch 64), then `pool::max_pool2d_forward`, which reads it back and
//! writes the pooled map and its argmax. Here the four conv outputs of each
//! pooling window are reduced in registers and only the pooled value and
//! the index of the winner are stored.
//!
//! # Algorithm
//!
//! A tile is `W` pooling windows (`4 W` conv pixels) by `B` vectors of
//! output channels, all in accumulators: per reduction step `(ky, kx, c)`
//! it loads `B` filter vectors and, per pixel, broadcasts one input value
//! and issues `B` FMAs, so one broadcast feeds every channel of the group
//! (the chapter's 32 output channels are one group of two vectors on
//! AVX-512). Accumulators start at the bias and the steps run in `direct`'s
//! `(ky, kx, c)` order with the same FMA, so every conv output is
//! **bit-identical to `direct`'s** on the same SIMD level (the tests check
//! it). The epilogue applies the relu (`max(v, 0)`, `direct`'s) to the four
//! pixels, then picks per lane the window's maximum exactly as
//! `pool::max_pool2d_forward` does: the first tap seeds it and a later tap
//! replaces it only when strictly greater (the first maximum in row-major
//! window order wins ties; a NaN never replaces, and a NaN first tap stays).
//! The argmax is that pool's encoding: the index of the winning conv output
//! within its image, `(y * out_w + x) * c_out + channel`, what the pool's
//! backward and [`conv2d_backward_filter_max_pooled`](super::conv2d_backward_filter_max_pooled)
//! read.
//!
//! | level | lanes | channel vectors `B` | windows `W` | accumulators |
//! |---|---|---|---|---|
//! | AVX-512 | 16 | 2 (32 channels) | 2 | 16 |
//! | AVX2+FMA | 8 | 2 (16 channels) | 1 | 8 |
//! | portable (`wide`) | 8 | 1 | 1 | 4 |
//!
//! The filter and bias are copied per call into thread-local scratch, zero
//! padded to whole groups of `B` vectors (`[step][c_pad]`), so a partial
//! last group needs no special path (its padded lanes are never stored);
//! the reduction offsets go to scratch too: no allocation once warm.
//!
//! # Threading
//!
//! Fixed runs of [`WINDOWS_PER_TASK`] pooled pixels (flattened over images
//! and rows) per task; every output is computed by exactly one task in the
//! same order, so the result does not depend on the threading.

use super::{lanes, pixel, tap_offsets, FusedConv, FusedPool, Threading};
use crate::activation::Activation;
use crate::arch::{scratch_f32, scratch_isize, FtzGuard, Isa, SendPtr, Slot, Token, Vf32};
#[cfg(target_arch = "x86_64")]
use crate::arch::{Avx2, Avx512};
use crate::conv::ConvShape;
use crate::error::check_len;
use crate::simd::SimdLevel;
use crate::{Error, Result};
use rayon::prelude::*;

/// Pooled pixels per rayon task (fixed: the split never depends on the
/// pool size). 48 windows are 24 AVX-512 tiles; the chapter's batch of 64
/// makes 226 tasks.
pub const WINDOWS_PER_TASK: usize = 48;

/// Why `shape` with `activation` cannot run [`conv2d_max_pool_argmax_at`],
/// if it cannot: what [`FusedConv::supports`] refuses with a 2x2 pool, or
/// one image's conv output too large for `u32` argmax indices.
pub fn max_pool_argmax_supports(shape: &ConvShape, activation: Activation) -> std::result::Result<(), String> {
    FusedConv::supports(shape, activation, FusedPool::Max2x2)?;
    let item = shape.out_h().checked_mul(shape.out_w()).and_then(|v| v.checked_mul(shape.c_out));
    if item.is_none_or(|v| v > u32::MAX as usize / 2) {
        return Err("the conv output of one image is too large for u32 argmax indices".into());
    }
    Ok(())
}

/// `conv + bias + activation + MaxPooling2D((2, 2))` of the batch `input`
/// (NHWC, `shape.n` images) with `filter` (HWIO) and `bias` (`[c_out]`),
/// into `output` (NHWC `[n, out_h / 2, out_w / 2, c_out]`) and `argmax`
/// (the same length: per pooled element, the index of the winning conv
/// output within its image, as `pool::max_pool2d_forward` writes it), on an
/// explicit SIMD level. Both outputs are overwritten. Bit-identical to the
/// `direct` convolution followed by `pool::max_pool2d_forward` on the same
/// level (see the module doc), for any threading.
///
/// Errors: an [`Error::Simd`] if this CPU cannot run `level`, an
/// [`Error::Unsupported`] for a shape [`max_pool_argmax_supports`] refuses,
/// a length mismatch for any buffer, an [`Error::InvalidShape`] when the
/// sizes overflow.
///
/// ```
/// use convnet_kernels::activation::Activation;
/// use convnet_kernels::conv::fused::{conv2d_max_pool_argmax_at, Threading};
/// use convnet_kernels::conv::ConvShape;
/// use convnet_kernels::simd::SimdLevel;
/// // 4x4x1 input, one 3x3 filter of ones: a 2x2 conv output, pooled to 1x1.
/// let shape = ConvShape::new(1, 4, 4, 1, 1, 3, 3)?;
/// let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
/// let (mut y, mut argmax) = ([0.0], [0]);
/// conv2d_max_pool_argmax_at(
///     SimdLevel::Portable, &shape, &x, &[1.0; 9], Some(&[0.5]), Activation::Relu,
///     &mut y, &mut argmax, Threading::CallingThread,
/// )?;
/// // The largest conv output is the last of the window, (1, 1): index 3.
/// assert_eq!((y, argmax), ([(5 + 6 + 7 + 9 + 10 + 11 + 13 + 14 + 15) as f32 + 0.5], [3]));
/// # Ok::<(), convnet_kernels::Error>(())
/// ```
#[allow(clippy::too_many_arguments)] // the conv's arguments, the two outputs, level and threading
pub fn conv2d_max_pool_argmax_at(
    level: SimdLevel,
    shape: &ConvShape,
    input: &[f32],
    filter: &[f32],
    bias: Option<&[f32]>,
    activation: Activation,
    output: &mut [f32],
    argmax: &mut [u32],
    threading: Threading,
) -> Result<()> {
    let token = Token::new(level)?;
    let s = shape;
    s.validate()?;
    max_pool_argmax_supports(s, activation).map_err(|reason| Error::Unsupported {
        algo: "fused",
        pass: "forward",
        shape: s.to_string(),
        reason,
    })?;
    let one = s.with_batch(1)?;
    let out_len = FusedPool::Max2x2.output_len(&one, s.n)?;
    check_len("input", input.len(), super::batch_input_len(&one, s.n)?, s)?;
    check_len("filter", filter.len(), s.filter_len(), s)?;
    if let Some(b) = bias {
        check_len("bias", b.len(), s.c_out, s)?;
    }
    check_len("output", output.len(), out_len, s)?;
    check_len("argmax", argmax.len(), out_len, s)?;
    if out_len == 0 {
        return Ok(());
    }
    let _ftz = FtzGuard::new();
    let group = group_width(level);
    let c_pad = s.c_out.div_ceil(group) * group;
    let steps = s.kh * s.kw * s.c_in;
    let packed_len = steps.checked_add(1).and_then(|v| v.checked_mul(c_pad)).ok_or_else(|| super::overflow(s, s.n))?;
    // The filter `[step][c_pad]` (HWIO's own order, padded), then the bias.
    let mut packed = scratch_f32(Slot::Filter, packed_len);
    packed.fill(0.0);
    for (dst, src) in packed.chunks_exact_mut(c_pad).zip(filter.chunks_exact(s.c_out)) {
        dst[..s.c_out].copy_from_slice(src);
    }
    if let Some(b) = bias {
        packed[steps * c_pad..][..s.c_out].copy_from_slice(b);
    }
    let mut xo = scratch_isize(Slot::Table, steps);
    xo.iter_mut().zip(tap_offsets(s)).for_each(|(dst, off)| *dst = off);
    let (ph, pw) = FusedPool::Max2x2.out_dims(s);
    let c_out = s.c_out;
    let job = Job {
        s,
        src: input,
        w: &packed,
        xo: &xo,
        c_pad,
        relu: activation == Activation::Relu,
        ph,
        pw,
        windows: out_len / c_out,
        slot_arg: [0, c_out, s.out_w() * c_out, (s.out_w() + 1) * c_out].map(|v| v as u32),
        dst: SendPtr(output.as_mut_ptr()),
        arg: SendPtr(argmax.as_mut_ptr()),
    };
    let tasks = job.windows.div_ceil(WINDOWS_PER_TASK);
    match threading {
        Threading::CallingThread => (0..tasks).for_each(|t| job.task(token, t)),
        Threading::Pool => (0..tasks).into_par_iter().for_each(|t| {
            let _ftz = FtzGuard::new();
            job.task(token, t)
        }),
    }
    Ok(())
}

/// [`conv2d_max_pool_argmax_at`] on the process-wide SIMD level.
#[allow(clippy::too_many_arguments)] // as conv2d_max_pool_argmax_at
pub fn conv2d_max_pool_argmax(
    shape: &ConvShape,
    input: &[f32],
    filter: &[f32],
    bias: Option<&[f32]>,
    activation: Activation,
    output: &mut [f32],
    argmax: &mut [u32],
    threading: Threading,
) -> Result<()> {
    let level = crate::simd::try_level()?;
    conv2d_max_pool_argmax_at(level, shape, input, filter, bias, activation, output, argmax, threading)
}

/// Channels per group (`B * LANES`) at `level`.
fn group_width(level: SimdLevel) -> usize {
    lanes(level)
        * match level {
            SimdLevel::Avx512 | SimdLevel::Avx2 => 2,
            SimdLevel::Portable => 1,
        }
}

/// One call, shared by its tasks.
struct Job<'a> {
    s: &'a ConvShape,
    src: &'a [f32],
    /// `[steps][c_pad]` filter then `[c_pad]` bias, zero padded.
    w: &'a [f32],
    /// Source offsets (floats, from a conv pixel's base) of each step.
    xo: &'a [isize],
    c_pad: usize,
    relu: bool,
    /// Pooled map size.
    ph: usize,
    pw: usize,
    /// Pooled pixels of the batch (`n * ph * pw`).
    windows: usize,
    /// Argmax offsets of the four window slots (row-major) from the first.
    slot_arg: [u32; 4],
    /// `windows * c_out` writable floats and `u32`s; tasks write disjoint windows.
    dst: SendPtr<f32>,
    arg: SendPtr<u32>,
}

impl Job<'_> {
    fn task(&self, token: Token, t: usize) {
        let first = t * WINDOWS_PER_TASK;
        let last = (first + WINDOWS_PER_TASK).min(self.windows);
        match token {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the token proves AVX-512F/AVX2/FMA; the entry point checked every length.
            Token::Avx512(isa) => unsafe { task_avx512(isa, self, first, last) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the token proves AVX2/FMA; the entry point checked every length.
            Token::Avx2(isa) => unsafe { task_avx2(isa, self, first, last) },
            // SAFETY: the entry point checked every length.
            Token::Portable(isa) => unsafe { windows::<_, 1, 1, 4>(isa, self, first, last) },
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn task_avx512(isa: Avx512, job: &Job, first: usize, last: usize) {
    // SAFETY: as `windows`.
    unsafe { windows::<_, 2, 2, 8>(isa, job, first, last) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn task_avx2(isa: Avx2, job: &Job, first: usize, last: usize) {
    // SAFETY: as `windows`.
    unsafe { windows::<_, 2, 1, 4>(isa, job, first, last) }
}

/// Where one pooling window reads and writes.
#[derive(Clone, Copy)]
struct Window {
    /// The input pointers of its four conv pixels (row-major slots).
    src: [*const f32; 4],
    /// Its first pooled element (channel 0), in `dst` and `arg`.
    out: usize,
    /// The argmax index of its first conv output (slot 0, channel 0) within its image.
    arg0: u32,
}

/// Pooled pixels `first..last` (flattened over images, rows, columns) of
/// `job`, in tiles of `W` windows (`P = 4 W` conv pixels) by `B` channel
/// vectors; the channel groups loop outside the tiles.
///
/// # Safety
///
/// `job` comes from the entry point (every length checked, the shape
/// accepted by [`max_pool_argmax_supports`], so every step of every conv
/// pixel of every window reads inside `src`); no other task writes pooled
/// pixels `first..last`; `P == 4 * W`.
#[inline(always)]
unsafe fn windows<S: Isa, const B: usize, const W: usize, const P: usize>(
    isa: S,
    job: &Job,
    first: usize,
    last: usize,
) {
    let s = job.s;
    let c_out = s.c_out;
    let src = job.src.as_ptr();
    let blank = Window { src: [src; 4], out: 0, arg0: 0 };
    let mut wins = [blank; WINDOWS_PER_TASK];
    let (mut px, mut py, mut img) = (first % job.pw, first / job.pw % job.ph, first / job.pw / job.ph);
    for (idx, win) in (first..last).zip(wins.iter_mut()) {
        let (cy, cx) = (2 * py, 2 * px);
        for (k, p) in win.src.iter_mut().enumerate() {
            *p = src.wrapping_offset(pixel(s, img, cy + k / 2, cx + k % 2));
        }
        win.out = idx * c_out;
        win.arg0 = ((cy * s.out_w() + cx) * c_out) as u32;
        px += 1;
        if px == job.pw {
            px = 0;
            py += 1;
            if py == job.ph {
                py = 0;
                img += 1;
            }
        }
    }
    let count = last - first;
    let group = B * S::LANES;
    for c0 in (0..c_out).step_by(group) {
        let w = job.w.as_ptr().wrapping_add(c0);
        let mut start = 0;
        while start < count {
            // A partial last tile repeats its last window: computed and
            // stored twice, with the same values.
            let tile: [Window; W] = std::array::from_fn(|i| wins[(start + i).min(count - 1)]);
            let mut sp = [src; P];
            for (i, win) in tile.iter().enumerate() {
                sp[i * 4..i * 4 + 4].copy_from_slice(&win.src);
            }
            // SAFETY: per this function's contract, every step of every
            // pixel reads inside `src`; `w + step * c_pad + b * LANES` has
            // LANES readable floats (c0 + group <= c_pad), as does the bias
            // row after the `steps` filter rows.
            let acc = unsafe { accumulate::<S, B, P>(isa, &sp, job.xo, w, job.c_pad) };
            for (i, win) in tile.iter().enumerate() {
                let px: [[S::V; B]; 4] = std::array::from_fn(|k| acc[i * 4 + k]);
                for (b, c) in (c0..c_out).step_by(S::LANES).take(B).enumerate() {
                    let nvalid = S::LANES.min(c_out - c);
                    // SAFETY: pooled element `win.out + c .. + nvalid` is one of
                    // this task's, inside `dst` and `arg` (entry point's lengths).
                    unsafe {
                        pool_store::<S>(isa, job, [px[0][b], px[1][b], px[2][b], px[3][b]], win, c, nvalid);
                    }
                }
            }
            start += W;
        }
    }
}

/// The accumulators of `P` conv pixels by `B` channel vectors: the bias,
/// plus every reduction step in `direct`'s order.
///
/// # Safety
///
/// `src[p] + xo[r]` readable for every pixel and step; `w + r * c_pad + b *
/// LANES` readable for `LANES` floats for every step `r < xo.len()` and
/// for `r == xo.len()` (the bias row), `b < B`.
#[inline(always)]
unsafe fn accumulate<S: Isa, const B: usize, const P: usize>(
    isa: S,
    src: &[*const f32; P],
    xo: &[isize],
    w: *const f32,
    c_pad: usize,
) -> [[S::V; B]; P] {
    // SAFETY: the bias row (contract).
    let bias: [S::V; B] = std::array::from_fn(|b| unsafe { isa.load(w.add(xo.len() * c_pad + b * S::LANES)) });
    let mut acc = [bias; P];
    let mut row = w;
    for &x_off in xo {
        // SAFETY: LANES readable floats per vector of this step's row (contract).
        let wv: [S::V; B] = std::array::from_fn(|b| unsafe { isa.load(row.add(b * S::LANES)) });
        for p in 0..P {
            // SAFETY: src[p] + x_off is inside the source (contract).
            let x = isa.splat(unsafe { *src[p].offset(x_off) });
            for b in 0..B {
                acc[p][b] = x.mul_add(wv[b], acc[p][b]);
            }
        }
        row = row.wrapping_add(c_pad);
    }
    acc
}

/// The epilogue of one window and one channel vector (channels `c ..
/// c + nvalid`): the activation on its four conv pixels, then per lane the
/// first strict maximum in row-major slot order and its argmax, stored.
///
/// # Safety
///
/// Pooled elements `win.out + c .. win.out + c + nvalid` lie inside
/// `job.dst` and `job.arg`, written by no other task; `nvalid <= LANES`.
#[inline(always)]
unsafe fn pool_store<S: Isa>(isa: S, job: &Job, px: [S::V; 4], win: &Window, c: usize, nvalid: usize) {
    let zero = isa.zero();
    let mut t = [[0f32; 16]; 4];
    for (row, v) in t.iter_mut().zip(px) {
        let v = if job.relu { v.max(zero) } else { v };
        // SAFETY: each row holds 16 >= LANES floats.
        unsafe { v.store(row.as_mut_ptr()) };
    }
    let (mut m, mut a) = ([0f32; 16], [0u32; 16]);
    let base = win.arg0 + c as u32;
    for l in 0..S::LANES {
        // `pool::max_pool2d_forward`'s rule: the first tap seeds, a later
        // one replaces only when strictly greater (NaN never does).
        let (mut best, mut off) = (t[0][l], 0);
        for (row, &slot) in t[1..].iter().zip(&job.slot_arg[1..]) {
            let v = row[l];
            let greater = v > best;
            best = if greater { v } else { best };
            off = if greater { slot } else { off };
        }
        m[l] = best;
        a[l] = base + l as u32 + off;
    }
    let (dst, arg) = (job.dst.get().wrapping_add(win.out + c), job.arg.get().wrapping_add(win.out + c));
    // SAFETY: `nvalid` (LANES when full) writable elements at both (contract).
    unsafe {
        if nvalid == S::LANES {
            std::ptr::copy_nonoverlapping(m.as_ptr(), dst, S::LANES);
            std::ptr::copy_nonoverlapping(a.as_ptr(), arg, S::LANES);
        } else {
            std::ptr::copy_nonoverlapping(m.as_ptr(), dst, nvalid);
            std::ptr::copy_nonoverlapping(a.as_ptr(), arg, nvalid);
        }
    }
}
