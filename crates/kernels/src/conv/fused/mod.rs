//! Fused inference convolution: `conv + bias + activation (+ 2x2 max pool)`
//! in one pass, so a convolution's output map is written once, or, when a
//! 2x2 max pool follows, never: the four outputs of each pooling window are
//! reduced in registers and only the pooled value is stored.
//!
//! # What it runs
//!
//! Dense convolutions (`groups == 1`) with no padding (Keras `valid`), any
//! kernel size, stride and dilation, with a [`Activation::Linear`] or
//! [`Activation::Relu`] epilogue, optionally followed by a Keras
//! `MaxPooling2D((2, 2))` (window 2x2, stride 2, `valid`: an odd last row or
//! column of the conv output is dropped, and is not even computed here).
//! [`FusedConv::supports`] says why anything else cannot run; callers fall
//! back to the unfused kernels then (nothing here silently changes meaning).
//!
//! # Layout and algorithm
//!
//! NHWC input, HWIO filter (Keras's), NHWC output. The micro-kernel is the
//! `direct` algorithm's: a tile of `P` output pixels by one vector of output
//! channels held in registers; for each reduction step `(ky, kx, c)` it loads
//! one filter vector and, per pixel, broadcasts one input value and issues
//! one FMA. Accumulators start at the bias and the steps run in the same
//! `(ky, kx, c)` order as `direct`, so every conv output is **bit-identical
//! to `direct`'s** on the same SIMD level, and the pooled value is exactly the
//! maximum `pool::max_pool2d_forward` picks (the first strict maximum in
//! row-major window order: `max(v, m)` keeps `m` unless `v > m`, NaN
//! included). With a pool, a tile is `P / 4` windows of four pixels.
//!
//! The filter is **not packed**: with one vector of output channels per
//! block, a reduction step reads `LANES` contiguous floats of the HWIO
//! filter at `(ky, kx, c, block)`. Only a partial last channel block
//! (`c_out` not a multiple of the vector width) is copied, zero padded, into
//! thread-local scratch per call. So a [`FusedConv`] holds no weights: it
//! is a plan (the reduction list and tiling) built once per shape, and the
//! current weights are passed on every call, never stale.
//!
//! Work is split into fixed runs of output pixels, flattened over images
//! and rows, and tiles run across row ends (a 3x3 output still fills whole
//! tiles); the channel blocks loop outside the tiles of a task, so one
//! filter block stays in cache while every tile of the task uses it.
//! [`Threading::CallingThread`] runs everything on the caller's thread
//! (batch-1 inference: no rayon hand-off); [`Threading::Pool`] splits the
//! runs over rayon. Each output is computed by exactly one task in the same
//! order either way, so the result does not depend on the threading.
//!
//! | level | lanes | tile `P` (pixels) | with pool |
//! |---|---|---|---|
//! | AVX-512 | 16 | 16 | 4 windows |
//! | AVX2+FMA | 8 | 12 | 3 windows |
//! | portable (`wide`) | 8 | 4 | 1 window |
//!
//! [`max_pool_2x2_at`] is the same pool on its own, without the argmax
//! training needs, for a pool whose conv ran on another algorithm.
//!
//! [`conv2d_max_pool_argmax_at`] is the training forward of `conv + 2x2
//! max pool`: the pooled map and the argmax the backward needs, with all of
//! a group's output channels per input broadcast (see its module,
//! `forward_argmax.rs`).
//!
//! [`conv2d_backward_filter_max_pooled_at`] is the training direction: the
//! filter and bias gradients of `conv + relu + 2x2 max pool` straight from
//! the pooled gradient and the pool's argmax, with no map of the conv's
//! output size (see its module, `backward.rs`).
//!
//! The safe oracle is [`conv2d_fused_reference`] (f64 accumulation, then the
//! activation and the pool); the tests also check bit-equality with the
//! unfused `direct` + `max_pool2d_forward` on every available level.

mod backward;
#[cfg(test)]
mod backward_tests;
mod forward_argmax;
#[cfg(test)]
mod forward_argmax_tests;
mod pool;
#[cfg(test)]
pub(crate) mod tests;

pub use backward::{
    conv2d_backward_filter_max_pooled, conv2d_backward_filter_max_pooled_at, max_pooled_supports, PooledGradient,
    PIXELS_PER_CHUNK, TAPS_PER_GROUP,
};
pub use forward_argmax::{
    conv2d_max_pool_argmax, conv2d_max_pool_argmax_at, max_pool_argmax_supports, WINDOWS_PER_TASK,
};
pub use pool::{max_pool_2x2, max_pool_2x2_at};

use super::ConvShape;
use crate::activation::Activation;
use crate::arch::{scratch_f32, FtzGuard, Isa, SendPtr, Slot, Token, Vf32};
#[cfg(target_arch = "x86_64")]
use crate::arch::{Avx2, Avx512};
use crate::error::check_len;
use crate::simd::SimdLevel;
use crate::{Error, Result};
use rayon::prelude::*;

/// The pooling fused into the epilogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum FusedPool {
    /// No pooling: the conv output itself is stored.
    #[default]
    None,
    /// Keras `MaxPooling2D((2, 2))`: window 2x2, stride 2, `valid`.
    Max2x2,
}

/// Where a fused call runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Threading {
    /// Fixed chunks of rows over the rayon pool.
    #[default]
    Pool,
    /// Entirely on the calling thread (no pool hand-off): for calls too
    /// small to split, such as batch-1 inference, or when the caller
    /// already runs one task per thread.
    CallingThread,
}

/// Output pixels (pooled or not) per rayon task: fixed, so the split never
/// depends on the pool size (the result does not depend on it either: every
/// output is computed by exactly one task, in the same order). 48 outputs
/// are four AVX2 tiles of 12 pixels, or 16 tiles of three pooling windows:
/// big enough to amortise the task, small enough that a batch-1 layer still
/// splits into several tasks.
const PIXELS_PER_TASK: usize = 48;

/// A fused convolution planned for one shape (any batch size): the
/// reduction list and the tiling, no weights. Build it once, run it on
/// every batch with the current filter and bias.
///
/// ```
/// use convnet_kernels::activation::Activation;
/// use convnet_kernels::conv::fused::{FusedConv, FusedPool, Threading};
/// use convnet_kernels::conv::ConvShape;
/// // 4x4x1 input, one 3x3 filter of ones: a 2x2 map, max-pooled to 1x1.
/// let shape = ConvShape::new(1, 4, 4, 1, 1, 3, 3)?;
/// let conv = FusedConv::new(&shape, Activation::Relu, FusedPool::Max2x2)?;
/// let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
/// let mut y = [0.0];
/// conv.run(&x, 1, &[1.0; 9], Some(&[0.5]), &mut y, Threading::CallingThread)?;
/// assert_eq!(y, [(5 + 6 + 7 + 9 + 10 + 11 + 13 + 14 + 15) as f32 + 0.5]);
/// # Ok::<(), convnet_kernels::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct FusedConv {
    token: Token,
    /// The shape with a batch of one.
    shape: ConvShape,
    activation: Activation,
    pool: FusedPool,
    /// Source offsets (floats, from a pixel's base) of each reduction step.
    xo: Vec<isize>,
    /// HWIO filter offsets (floats, from the block's first channel) of each step.
    wo: Vec<isize>,
    /// Offsets into a packed tail block (`[tap][c][LANES]`) of each step.
    wo_tail: Vec<isize>,
}

impl FusedConv {
    /// Why `shape`, `activation` and `pool` cannot run fused, if they cannot.
    pub fn supports(shape: &ConvShape, activation: Activation, pool: FusedPool) -> std::result::Result<(), String> {
        let _ = activation; // both activations run
        if shape.groups != 1 {
            return Err(format!("{} groups: the fused kernel runs dense convolutions", shape.groups));
        }
        if shape.pad_top + shape.pad_bottom + shape.pad_left + shape.pad_right != 0 {
            return Err("padding: the fused kernel runs `valid` convolutions".into());
        }
        if pool == FusedPool::Max2x2 && (shape.out_h() < 2 || shape.out_w() < 2) {
            return Err(format!("a {}x{} output is smaller than the 2x2 pooling window", shape.out_h(), shape.out_w()));
        }
        Ok(())
    }

    /// Plans `shape` (its batch size is ignored) on the process-wide SIMD level.
    pub fn new(shape: &ConvShape, activation: Activation, pool: FusedPool) -> Result<Self> {
        Self::new_at(crate::simd::try_level()?, shape, activation, pool)
    }

    /// Plans `shape` on an explicit SIMD level: an [`Error::Simd`] if this
    /// CPU cannot run it, an [`Error::Unsupported`] if the shape cannot run
    /// fused (see [`FusedConv::supports`]).
    pub fn new_at(level: SimdLevel, shape: &ConvShape, activation: Activation, pool: FusedPool) -> Result<Self> {
        let token = Token::new(level)?;
        let shape = shape.with_batch(1)?;
        shape.validate()?;
        Self::supports(&shape, activation, pool).map_err(|reason| Error::Unsupported {
            algo: "fused",
            pass: "forward",
            shape: shape.to_string(),
            reason,
        })?;
        let lanes = lanes(token.level());
        let red = shape.kh * shape.kw * shape.c_in;
        let xo = tap_offsets(&shape).collect();
        // Step r of the reduction is HWIO row r of the filter.
        let wo = (0..red).map(|r| (r * shape.c_out) as isize).collect();
        let wo_tail = (0..red).map(|r| (r * lanes) as isize).collect();
        Ok(FusedConv { token, shape, activation, pool, xo, wo, wo_tail })
    }

    /// Output height for the planned shape (pooled when a pool is fused).
    pub fn out_h(&self) -> usize {
        self.pool.out_dims(&self.shape).0
    }

    /// Output width (pooled when a pool is fused).
    pub fn out_w(&self) -> usize {
        self.pool.out_dims(&self.shape).1
    }

    /// Output floats for a batch of `n`: `n * out_h * out_w * c_out`.
    pub fn output_len(&self, n: usize) -> Result<usize> {
        self.pool.output_len(&self.shape, n)
    }

    /// Input floats for a batch of `n`.
    pub fn input_len(&self, n: usize) -> Result<usize> {
        batch_input_len(&self.shape, n)
    }

    /// The planned shape (batch 1).
    pub fn shape(&self) -> &ConvShape {
        &self.shape
    }

    /// Runs the fused convolution on `n` images: `input` NHWC, `filter` HWIO,
    /// `bias` `[c_out]`, `output` NHWC `[n, out_h, out_w, c_out]` (overwritten).
    pub fn run(
        &self,
        input: &[f32],
        n: usize,
        filter: &[f32],
        bias: Option<&[f32]>,
        output: &mut [f32],
        threading: Threading,
    ) -> Result<()> {
        let s = &self.shape;
        check_len("input", input.len(), self.input_len(n)?, s)?;
        check_len("filter", filter.len(), s.filter_len(), s)?;
        if let Some(b) = bias {
            check_len("bias", b.len(), s.c_out, s)?;
        }
        check_len("output", output.len(), self.output_len(n)?, s)?;
        if n == 0 || output.is_empty() {
            return Ok(());
        }
        let _ftz = FtzGuard::new();
        let lanes = lanes(self.token.level());
        let full_blocks = s.c_out / lanes;
        let tail = s.c_out % lanes;
        // The partial last block, zero padded: `[step][lanes]`, then its bias.
        let mut tail_buf = scratch_f32(Slot::Filter, if tail > 0 { (self.xo.len() + 1) * lanes } else { 0 });
        if tail > 0 {
            let (wt, bt) = tail_buf.split_at_mut(self.xo.len() * lanes);
            let c0 = full_blocks * lanes;
            for (row, &w_off) in wt.chunks_exact_mut(lanes).zip(&self.wo) {
                row.fill(0.0);
                row[..tail].copy_from_slice(&filter[w_off as usize + c0..][..tail]);
            }
            bt.fill(0.0);
            if let Some(b) = bias {
                bt[..tail].copy_from_slice(&b[c0..]);
            }
        }
        let mut bias_full = scratch_f32(Slot::Table, if bias.is_none() { full_blocks * lanes } else { 0 });
        bias_full.fill(0.0);
        let job = Job {
            conv: self,
            n,
            src: input,
            filter,
            bias: bias.unwrap_or(&bias_full),
            tail: &tail_buf,
            dst: SendPtr(output.as_mut_ptr()),
            rows: self.out_h(),
        };
        let tasks = (n * job.rows * self.out_w()).div_ceil(PIXELS_PER_TASK);
        match threading {
            Threading::CallingThread => (0..tasks).for_each(|t| job.task(t)),
            Threading::Pool => (0..tasks).into_par_iter().for_each(|t| {
                let _ftz = FtzGuard::new();
                job.task(t)
            }),
        }
        Ok(())
    }
}

/// The offset, from a conv output pixel's first input element, of the
/// input element each reduction step `(ky, kx, c)` reads, in HWIO's step
/// order (the filter row the step multiplies): the table every fused
/// kernel walks.
pub(crate) fn tap_offsets(s: &ConvShape) -> impl Iterator<Item = isize> + '_ {
    (0..s.kh).flat_map(move |ky| {
        (0..s.kw).flat_map(move |kx| {
            let pixel = (ky * s.dilation_h * s.w + kx * s.dilation_w) * s.c_in;
            (0..s.c_in).map(move |c| (pixel + c) as isize)
        })
    })
}

pub(crate) fn overflow(s: &ConvShape, n: usize) -> Error {
    Error::InvalidShape { shape: s.to_string(), reason: format!("a batch of {n} overflows the buffer sizes") }
}

/// Input floats of `shape` for a batch of `n`, checked.
pub(crate) fn batch_input_len(shape: &ConvShape, n: usize) -> Result<usize> {
    n.checked_mul(shape.input_len()).ok_or_else(|| overflow(shape, n))
}

impl FusedPool {
    /// The `(height, width)` a convolution of `shape` writes with this pool
    /// fused: the conv output, halved (rounded down, Keras `valid`) by a
    /// 2x2 pool.
    pub fn out_dims(self, shape: &ConvShape) -> (usize, usize) {
        match self {
            FusedPool::None => (shape.out_h(), shape.out_w()),
            FusedPool::Max2x2 => (shape.out_h() / 2, shape.out_w() / 2),
        }
    }

    /// Output floats for a batch of `n` images of `shape` with this pool
    /// fused (`n * height * width * c_out`), checked for overflow.
    pub fn output_len(self, shape: &ConvShape, n: usize) -> Result<usize> {
        let (h, w) = self.out_dims(shape);
        n.checked_mul(h * w * shape.c_out).ok_or_else(|| overflow(shape, n))
    }
}

/// Vector lanes at `level`.
fn lanes(level: SimdLevel) -> usize {
    match level {
        SimdLevel::Avx512 => 16,
        SimdLevel::Avx2 | SimdLevel::Portable => 8,
    }
}

/// One call of [`FusedConv::run`], shared by its tasks.
struct Job<'a> {
    conv: &'a FusedConv,
    n: usize,
    src: &'a [f32],
    filter: &'a [f32],
    /// `c_out` floats, or at least the full blocks' worth of zeros.
    bias: &'a [f32],
    /// The packed partial block and its bias (empty without a partial block).
    tail: &'a [f32],
    /// `n * rows * out_w * c_out` writable floats; tasks write disjoint pixels.
    dst: SendPtr<f32>,
    /// Output rows per image.
    rows: usize,
}

impl Job<'_> {
    /// Runs output pixels `t * PIXELS_PER_TASK ..` of the call (flattened
    /// over images, rows and columns).
    fn task(&self, t: usize) {
        let first = t * PIXELS_PER_TASK;
        let last = (first + PIXELS_PER_TASK).min(self.n * self.rows * self.conv.out_w());
        match self.conv.token {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the token proves AVX-512F/AVX2/FMA; `run` checked every length.
            Token::Avx512(isa) => unsafe { rows_avx512(isa, self, first, last) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the token proves AVX2/FMA; `run` checked every length.
            Token::Avx2(isa) => unsafe { rows_avx2(isa, self, first, last) },
            // SAFETY: `run` checked every length.
            Token::Portable(isa) => unsafe { rows::<_, 4>(isa, self, first, last) },
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn rows_avx512(isa: Avx512, job: &Job, first: usize, last: usize) {
    // SAFETY: as `rows`.
    unsafe { rows::<_, 16>(isa, job, first, last) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2(isa: Avx2, job: &Job, first: usize, last: usize) {
    // SAFETY: as `rows`.
    unsafe { rows::<_, 12>(isa, job, first, last) }
}

/// Output pixels `first..last` (flattened over images, rows, columns) of
/// `job`, in tiles of `P` conv pixels. Tiles run across row and image
/// boundaries, so a small output (the chapter's 3x3 third layer) still
/// fills whole tiles.
///
/// # Safety
///
/// `job` comes from [`FusedConv::run`] (lengths checked): every source
/// pixel of every output is inside `src` (no padding, and the output size
/// arithmetic of [`ConvShape`]); no other task writes these pixels.
#[inline(always)]
unsafe fn rows<S: Isa, const P: usize>(isa: S, job: &Job, first: usize, last: usize) {
    let conv = job.conv;
    let s = &conv.shape;
    let pool = conv.pool == FusedPool::Max2x2;
    let relu = conv.activation == Activation::Relu;
    let (out_w, c_out) = (conv.out_w(), s.c_out);
    let step = if pool { 2 } else { 1 }; // conv pixels per output pixel, per axis
    let per_tile = if pool { P / 4 } else { P }; // output pixels per tile
    let src = job.src.as_ptr();
    let blocks = c_out.div_ceil(S::LANES);
    // Every tile's pixel pointers first (walking the coordinates, no
    // division per pixel), then the channel blocks over all of them: the
    // pointers are built once per task, not once per block.
    let mut sps = [[src; P]; PIXELS_PER_TASK];
    let mut dps = [[job.dst.get(); P]; PIXELS_PER_TASK];
    let mut tiles = 0;
    let (mut o, mut r, mut img) = (first % out_w, first / out_w % job.rows, first / out_w / job.rows);
    let mut idx = first;
    while idx < last {
        let cnt = per_tile.min(last - idx);
        let (sp, dp) = (&mut sps[tiles], &mut dps[tiles]);
        for i in 0..cnt {
            if pool {
                for k in 0..4 {
                    let (cy, cx) = (r * step + k / 2, o * step + k % 2);
                    sp[i * 4 + k] = src.wrapping_offset(pixel(s, img, cy, cx));
                }
            } else {
                sp[i] = src.wrapping_offset(pixel(s, img, r, o));
            }
            dp[i] = job.dst.get().wrapping_add((idx + i) * c_out);
            o += 1;
            if o == out_w {
                o = 0;
                r += 1;
                if r == job.rows {
                    r = 0;
                    img += 1;
                }
            }
        }
        // A partial tile repeats its last output: computed and stored twice.
        let px = if pool { 4 } else { 1 };
        for i in cnt..per_tile {
            dp[i] = dp[cnt - 1];
            for k in 0..px {
                sp[i * px + k] = sp[(cnt - 1) * px + k];
            }
        }
        tiles += 1;
        idx += cnt;
    }
    for blk in 0..blocks {
        let c0 = blk * S::LANES;
        let nvalid = S::LANES.min(c_out - c0);
        let (w, wo, bias) = if nvalid == S::LANES {
            // SAFETY: c0 + LANES <= c_out <= filter and bias lengths.
            unsafe { (job.filter.as_ptr().add(c0), &conv.wo[..], job.bias.as_ptr().add(c0)) }
        } else {
            let (wt, bt) = job.tail.split_at(conv.xo.len() * S::LANES);
            (wt.as_ptr(), &conv.wo_tail[..], bt.as_ptr())
        };
        for (sp, dp) in sps.iter().zip(&dps).take(tiles) {
            let mut d = [job.dst.get(); P];
            for (a, b) in d.iter_mut().zip(dp).take(per_tile) {
                *a = b.wrapping_add(c0);
            }
            // SAFETY: per this function's contract, every step of every
            // pixel reads inside `src`; `w + wo[r]` has LANES readable
            // floats (a full block of the filter, or the padded tail);
            // `d[i]` has `nvalid` writable floats among this task's pixels.
            unsafe {
                let acc = tile::<S, P>(isa, sp, &conv.xo, wo, w, bias);
                store::<S, P>(isa, acc, &d, per_tile, pool, relu, nvalid);
            }
        }
    }
}

/// Source offset (floats) of conv output pixel `(cy, cx)` of image `img`:
/// its window's top-left input pixel.
#[inline(always)]
fn pixel(s: &ConvShape, img: usize, cy: usize, cx: usize) -> isize {
    (((img * s.h + cy * s.stride_h) * s.w + cx * s.stride_w) * s.c_in) as isize
}

/// The accumulators of `P` pixels for one channel block: bias, plus every
/// reduction step in order.
///
/// # Safety
///
/// `src[p] + xo[r]` readable for every pixel and step; `w + wo[r]` and
/// `bias` readable for `LANES` floats.
#[inline(always)]
unsafe fn tile<S: Isa, const P: usize>(
    isa: S,
    src: &[*const f32; P],
    xo: &[isize],
    wo: &[isize],
    w: *const f32,
    bias: *const f32,
) -> [S::V; P] {
    // SAFETY: `bias` readable for LANES floats (contract).
    let b = unsafe { isa.load(bias) };
    let mut acc = [b; P];
    // `zip`: indexed `wo[r]` would keep a bounds check in the hot loop.
    for (&x_off, &w_off) in xo.iter().zip(wo) {
        // SAFETY: LANES readable floats at w + w_off (contract).
        let wv = unsafe { isa.load(w.offset(w_off)) };
        for p in 0..P {
            // SAFETY: src[p] + x_off is inside the source (contract).
            let x = isa.splat(unsafe { *src[p].offset(x_off) });
            acc[p] = x.mul_add(wv, acc[p]);
        }
    }
    acc
}

/// The epilogue: activation, then (with `pool`) the max of each window's
/// four pixels, stored to `dst[0..outputs]` (`nvalid` channels each).
///
/// # Safety
///
/// `dst[i]` writable for `nvalid <= LANES` floats, `i < outputs`.
#[inline(always)]
unsafe fn store<S: Isa, const P: usize>(
    isa: S,
    mut acc: [S::V; P],
    dst: &[*mut f32; P],
    outputs: usize,
    pool: bool,
    relu: bool,
    nvalid: usize,
) {
    let zero = isa.zero();
    if relu {
        for a in acc.iter_mut() {
            *a = a.max(zero);
        }
    }
    for (i, &d) in dst.iter().enumerate().take(outputs) {
        let v = if pool {
            // `v.max(m)` is `v > m ? v : m`: the first strict maximum in
            // row-major window order, as the max-pool kernel picks it.
            let mut m = acc[i * 4];
            for a in &acc[i * 4 + 1..i * 4 + 4] {
                m = a.max(m);
            }
            m
        } else {
            acc[i]
        };
        if nvalid == S::LANES {
            // SAFETY: LANES writable floats (contract).
            unsafe { v.store(d) };
        } else {
            let mut tmp = [0f32; 16];
            // SAFETY: tmp holds 16 >= LANES floats; d has nvalid writable floats.
            unsafe {
                v.store(tmp.as_mut_ptr());
                std::ptr::copy_nonoverlapping(tmp.as_ptr(), d, nvalid);
            }
        }
    }
}

/// The safe oracle: [`reference::forward`](super::reference) (f64
/// accumulation), then the activation, then the 2x2 max pool (first strict
/// maximum), into `output` (`[n, out_h, out_w, c_out]`, pooled dims with a
/// pool). Checks every length.
pub fn conv2d_fused_reference(
    shape: &ConvShape,
    input: &[f32],
    filter: &[f32],
    bias: Option<&[f32]>,
    activation: Activation,
    pool: FusedPool,
    output: &mut [f32],
) -> Result<()> {
    shape.validate()?;
    check_len("input", input.len(), shape.input_len(), shape)?;
    check_len("filter", filter.len(), shape.filter_len(), shape)?;
    if let Some(b) = bias {
        check_len("bias", b.len(), shape.c_out, shape)?;
    }
    let mut conv = vec![0f32; shape.output_len()];
    super::reference::forward(shape, input, filter, bias, &mut conv);
    if activation == Activation::Relu {
        conv.iter_mut().for_each(|v| *v = if *v > 0.0 { *v } else { 0.0 });
    }
    let (oh, ow, c) = (shape.out_h(), shape.out_w(), shape.c_out);
    match pool {
        FusedPool::None => {
            check_len("output", output.len(), conv.len(), shape)?;
            output.copy_from_slice(&conv);
        }
        FusedPool::Max2x2 => {
            let (ph, pw) = (oh / 2, ow / 2);
            check_len("output", output.len(), shape.n * ph * pw * c, shape)?;
            for (i, o) in output.iter_mut().enumerate() {
                let (ch, px, py, img) = (i % c, i / c % pw, i / c / pw % ph, i / c / pw / ph);
                let at = |dy: usize, dx: usize| conv[((img * oh + 2 * py + dy) * ow + 2 * px + dx) * c + ch];
                let mut m = at(0, 0);
                for v in [at(0, 1), at(1, 0), at(1, 1)] {
                    if v > m {
                        m = v;
                    }
                }
                *o = m;
            }
        }
    }
    Ok(())
}

/// One-shot fused convolution on an explicit SIMD level: plans `shape` and
/// runs it over the rayon pool. For repeated calls, keep a [`FusedConv`].
#[allow(clippy::too_many_arguments)] // the conv's arguments, plus the level and the pool
pub fn conv2d_fused_at(
    level: SimdLevel,
    shape: &ConvShape,
    input: &[f32],
    filter: &[f32],
    bias: Option<&[f32]>,
    activation: Activation,
    pool: FusedPool,
    output: &mut [f32],
) -> Result<()> {
    FusedConv::new_at(level, shape, activation, pool)?.run(input, shape.n, filter, bias, output, Threading::Pool)
}

/// [`conv2d_fused_at`] on the process-wide SIMD level.
pub fn conv2d_fused(
    shape: &ConvShape,
    input: &[f32],
    filter: &[f32],
    bias: Option<&[f32]>,
    activation: Activation,
    pool: FusedPool,
    output: &mut [f32],
) -> Result<()> {
    conv2d_fused_at(crate::simd::try_level()?, shape, input, filter, bias, activation, pool, output)
}
