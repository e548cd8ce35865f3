//! Register-blocked fused inference convolution for small batches (batch-1
//! `predict`): `conv + bias + activation (+ 2x2 max pool)` like
//! [`conv::fused`](super::fused), with register tiles of several pixels by
//! **two** vectors of output channels, sized so that the last tile of a
//! layer wastes (almost) nothing.
//!
//! # What it runs
//!
//! Exactly what [`FusedConv`](super::fused::FusedConv) runs (same
//! [`BlockedConv::supports`]): dense (`groups == 1`) `valid` convolutions,
//! any window, stride and dilation, linear or ReLU, optionally followed by a
//! Keras `MaxPooling2D((2, 2))`. It runs on the calling thread (no rayon):
//! it is meant for calls too small to split.
//!
//! # Tiles
//!
//! A tile is `P` output pixels by `NV` vectors of output channels, `P * NV`
//! accumulators seeded with the bias. Per reduction step `(ky, kx, ci)` it
//! loads `NV` filter vectors and, per pixel, broadcasts one input value and
//! issues `NV` FMAs: `P + NV` loads for `P * NV` FMAs, against `P + 1` for
//! `P` with the one-vector tiles of `conv::fused`. The filter is read in
//! place (HWIO: the `NV * LANES` channels of a block are contiguous in each
//! step's row, and consecutive steps are `c_out` floats apart), so nothing
//! is packed and the weights passed on each call are the ones used; only a
//! partial last vector (`c_out` not a multiple of the lanes) is copied, zero
//! padded, per call.
//!
//! | level | lanes | `NV` | tile sizes `P` (pixels) | with pool |
//! |---|---|---|---|---|
//! | AVX-512 | 16 | 2 | 8, 4 (16 zmm accumulators) | 2, 1 windows |
//! | AVX2+FMA | 8 | 2 | 6, 4, 2 (12 ymm accumulators) | 1 window (8 accumulators) |
//! | portable (`wide`) | 8 | 1 | 4 | 1 window |
//!
//! The tiles are no larger because LLVM issues all of a step's broadcasts
//! before its FMAs: a tile needs `P * NV` accumulators, `NV` filter vectors
//! and `P` broadcast registers. AVX-512 tiles of 12 pixels (24 + 2 + 12 >
//! 32 zmm) spilled accumulators to the stack on every step and made the
//! chapter model's batch-1 pass 1.3-1.5x slower than tiles of 8 (measured
//! on the 2-core AMD EPYC, Zen 5); the AVX2 pooled tile is one window for the same reason (8 pixels
//! by two ymm vectors would need 26 of the 16 registers).
//!
//! Output pixels (flattened over images, rows and columns; with a pool,
//! windows of four conv pixels) are cut into tiles of the largest size, and
//! the rest into the smallest size that holds it: the chapter's pooled
//! 13x13x32 layer (25 windows) is twelve AVX-512 tiles of two windows and
//! one of one, nothing wasted, where the 16-pixel tiles of `conv::fused`
//! compute 28 windows; its 3x3 third layer is a tile of 8 and one of 4 (1
//! used) rather than one of 16. A tile that is still too big repeats its last
//! output (computed twice, stored twice). A channel block of `NV` whole
//! vectors runs while `NV * LANES` channels remain, then one-vector blocks.
//!
//! # Exactness
//!
//! Each accumulator starts at the bias and takes one `mul_add` per step in
//! `direct`'s `(ky, kx, ci)` order, the epilogue is `conv::fused`'s (ReLU as
//! `max(acc, 0)`, the window reduced with `max(v, m)`: the first strict
//! maximum in row-major order): so every output is **bit-identical to
//! `direct`** followed by `max_pool2d_forward`, on the same SIMD level, and
//! to `conv::fused`. The tests check that on every level this CPU runs.

#[cfg(test)]
mod tests;

use super::fused::{batch_input_len, FusedPool};
use super::ConvShape;
use crate::activation::Activation;
use crate::arch::{scratch_f32, FtzGuard, Isa, Slot, Token, Vf32};
#[cfg(target_arch = "x86_64")]
use crate::arch::{Avx2, Avx512};
use crate::error::check_len;
use crate::simd::SimdLevel;
use crate::{Error, Result};

/// The largest tile, in pixels, of any level (array sizes).
const MAX_P: usize = 8;

/// Output pixels (pooled or not) whose tiles are set up together before the
/// channel blocks run over them: the tile pointers are built once per
/// chunk, not once per block. 48 windows are 24 pooled AVX-512 tiles.
const CHUNK: usize = 48;

/// A register-blocked fused convolution planned for one shape (any batch
/// size; runs on the calling thread): the reduction offsets and the tiling,
/// no weights.
///
/// ```
/// use convnet_kernels::activation::Activation;
/// use convnet_kernels::conv::blocked::BlockedConv;
/// use convnet_kernels::conv::fused::FusedPool;
/// use convnet_kernels::conv::ConvShape;
/// // 4x4x1 input, one 3x3 filter of ones: a 2x2 map, max-pooled to 1x1.
/// let shape = ConvShape::new(1, 4, 4, 1, 1, 3, 3)?;
/// let conv = BlockedConv::new(&shape, Activation::Relu, FusedPool::Max2x2)?;
/// let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
/// let mut y = [0.0];
/// conv.run(&x, 1, &[1.0; 9], Some(&[0.5]), &mut y)?;
/// assert_eq!(y, [(5 + 6 + 7 + 9 + 10 + 11 + 13 + 14 + 15) as f32 + 0.5]);
/// # Ok::<(), convnet_kernels::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct BlockedConv {
    token: Token,
    /// The shape with a batch of one.
    shape: ConvShape,
    activation: Activation,
    pool: FusedPool,
    /// Source offsets (floats, from a pixel's base) of each reduction step.
    xo: Vec<isize>,
}

impl BlockedConv {
    /// Why `shape`, `activation` and `pool` cannot run, if they cannot (the
    /// same conditions as [`FusedConv::supports`](super::fused::FusedConv::supports)).
    pub fn supports(shape: &ConvShape, activation: Activation, pool: FusedPool) -> std::result::Result<(), String> {
        super::fused::FusedConv::supports(shape, activation, pool)
    }

    /// Plans `shape` (its batch size is ignored) on the process-wide SIMD level.
    pub fn new(shape: &ConvShape, activation: Activation, pool: FusedPool) -> Result<Self> {
        Self::new_at(crate::simd::try_level()?, shape, activation, pool)
    }

    /// Plans `shape` on an explicit SIMD level: an [`Error::Simd`] if this
    /// CPU cannot run it, an [`Error::Unsupported`] if the shape cannot run
    /// (see [`BlockedConv::supports`]).
    pub fn new_at(level: SimdLevel, shape: &ConvShape, activation: Activation, pool: FusedPool) -> Result<Self> {
        let token = Token::new(level)?;
        let shape = shape.with_batch(1)?;
        shape.validate()?;
        Self::supports(&shape, activation, pool).map_err(|reason| Error::Unsupported {
            algo: "blocked",
            pass: "forward",
            shape: shape.to_string(),
            reason,
        })?;
        let mut xo = Vec::with_capacity(shape.kh * shape.kw * shape.c_in);
        for ky in 0..shape.kh {
            for kx in 0..shape.kw {
                let pixel = (ky * shape.dilation_h * shape.w + kx * shape.dilation_w) * shape.c_in;
                xo.extend((0..shape.c_in).map(|c| (pixel + c) as isize));
            }
        }
        Ok(BlockedConv { token, shape, activation, pool, xo })
    }

    /// Output height (pooled when a pool is fused).
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

    /// Runs the convolution on `n` images on the calling thread: `input`
    /// NHWC, `filter` HWIO, `bias` `[c_out]`, `output` NHWC
    /// `[n, out_h, out_w, c_out]` (overwritten). Allocation-free once warm.
    pub fn run(&self, input: &[f32], n: usize, filter: &[f32], bias: Option<&[f32]>, output: &mut [f32]) -> Result<()> {
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
        let steps = self.xo.len();
        let tail = s.c_out % lanes;
        let c_tail = s.c_out - tail;
        // The partial last vector, zero padded: `[step][lanes]`, then its bias.
        let mut tail_buf = scratch_f32(Slot::Filter, if tail > 0 { (steps + 1) * lanes } else { 0 });
        if tail > 0 {
            let (wt, bt) = tail_buf.split_at_mut(steps * lanes);
            for (r, row) in wt.chunks_exact_mut(lanes).enumerate() {
                row.fill(0.0);
                row[..tail].copy_from_slice(&filter[r * s.c_out + c_tail..][..tail]);
            }
            bt.fill(0.0);
            if let Some(b) = bias {
                bt[..tail].copy_from_slice(&b[c_tail..]);
            }
        }
        let mut zeros = scratch_f32(Slot::Table, if bias.is_none() { c_tail } else { 0 });
        zeros.fill(0.0);
        let job = Job {
            conv: self,
            src: input,
            filter,
            bias: bias.unwrap_or(&zeros),
            tail: &tail_buf,
            dst: output.as_mut_ptr(),
            rows: self.out_h(),
        };
        let total = n * job.rows * self.out_w();
        for first in (0..total).step_by(CHUNK) {
            let last = (first + CHUNK).min(total);
            match self.token {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the token proves AVX-512F/AVX2/FMA; `run` checked every length.
                Token::Avx512(isa) => unsafe { chunk_avx512(isa, &job, first, last) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the token proves AVX2/FMA; `run` checked every length.
                Token::Avx2(isa) => unsafe { chunk_avx2(isa, &job, first, last) },
                // SAFETY: `run` checked every length.
                Token::Portable(isa) => unsafe { chunk::<_, 1>(isa, &job, first, last, PORTABLE_TILES) },
            }
        }
        Ok(())
    }
}

/// Vector lanes at `level`.
fn lanes(level: SimdLevel) -> usize {
    match level {
        SimdLevel::Avx512 => 16,
        SimdLevel::Avx2 | SimdLevel::Portable => 8,
    }
}

/// One call of [`BlockedConv::run`].
struct Job<'a> {
    conv: &'a BlockedConv,
    src: &'a [f32],
    filter: &'a [f32],
    /// `c_out` floats, or at least the whole vectors' worth of zeros.
    bias: &'a [f32],
    /// The packed partial vector and its bias (empty without one).
    tail: &'a [f32],
    /// `n * rows * out_w * c_out` writable floats.
    dst: *mut f32,
    /// Output rows per image.
    rows: usize,
}

/// Tile sizes (conv pixels), ascending, per level; see the module doc for
/// why not 12.
const AVX512_TILES: &[usize] = &[4, 8];
/// See [`AVX512_TILES`]. With a pool only 4 (one window): 8 pixels by two
/// ymm vectors would need 16 accumulators plus the operands, more than the
/// 16 ymm registers.
const AVX2_TILES: &[usize] = &[2, 4, 6];
/// See [`AVX512_TILES`].
const PORTABLE_TILES: &[usize] = &[4];

/// The pixel and output pointers of one tile: `p` conv pixels (a multiple
/// of four with a pool), one output per pixel (per window with a pool),
/// slots past the outputs left repeating the last one.
#[derive(Clone, Copy)]
struct Tile {
    src: [*const f32; MAX_P],
    dst: [*mut f32; MAX_P],
    p: usize,
}

/// One channel block: its filter (`wstride` floats per reduction step), its
/// bias, its first output channel, and the lanes of its last vector stored.
#[derive(Clone, Copy)]
struct Block {
    w: *const f32,
    wstride: usize,
    bias: *const f32,
    c0: usize,
    nvalid: usize,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn chunk_avx512(isa: Avx512, job: &Job, first: usize, last: usize) {
    // SAFETY: as `chunk`.
    unsafe { chunk::<_, 2>(isa, job, first, last, AVX512_TILES) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn chunk_avx2(isa: Avx2, job: &Job, first: usize, last: usize) {
    // SAFETY: as `chunk`.
    unsafe { chunk::<_, 2>(isa, job, first, last, AVX2_TILES) }
}

/// The tile size for `pixels` remaining conv pixels: the largest if they
/// fill it, else the smallest that holds them (sizes usable with a pool
/// only when `pool`: multiples of four).
fn tile_size(sizes: &[usize], pixels: usize, pool: bool) -> usize {
    let usable = || sizes.iter().copied().filter(|p| !pool || p % 4 == 0);
    let largest = usable().max().unwrap_or(4);
    if pixels >= largest {
        largest
    } else {
        usable().find(|&p| p >= pixels).unwrap_or(largest)
    }
}

/// Output pixels `first..last` (flattened over images, rows, columns) of
/// `job`: cut into tiles, then every channel block over every tile.
///
/// # Safety
///
/// `job` comes from [`BlockedConv::run`] (lengths checked): every source
/// pixel of every output is inside `src` (no padding, and the output size
/// arithmetic of [`ConvShape`]); `last - first <= CHUNK`.
#[inline(always)]
unsafe fn chunk<S: Isa, const NV: usize>(isa: S, job: &Job, first: usize, last: usize, sizes: &[usize]) {
    let conv = job.conv;
    let s = &conv.shape;
    let pool = conv.pool == FusedPool::Max2x2;
    let (out_w, c_out) = (conv.out_w(), s.c_out);
    let (step, px) = if pool { (2, 4) } else { (1, 1) }; // conv pixels per output: per axis, in all
    let src = job.src.as_ptr();
    let mut tiles = [Tile { src: [src; MAX_P], dst: [job.dst; MAX_P], p: 0 }; CHUNK];
    let mut count = 0;
    let (mut o, mut r, mut img) = (first % out_w, first / out_w % job.rows, first / out_w / job.rows);
    let mut idx = first;
    while idx < last {
        let p = tile_size(sizes, (last - idx) * px, pool);
        let outputs = (p / px).min(last - idx);
        let t = &mut tiles[count];
        t.p = p;
        for i in 0..outputs {
            for k in 0..px {
                let (cy, cx) = (r * step + k / 2, o * step + k % 2);
                let at = (((img * s.h + cy * s.stride_h) * s.w + cx * s.stride_w) * s.c_in) as isize;
                t.src[i * px + k] = src.wrapping_offset(at);
            }
            t.dst[i] = job.dst.wrapping_add((idx + i) * c_out);
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
        // A tile bigger than what is left repeats its last output.
        for i in outputs..p / px {
            t.dst[i] = t.dst[outputs - 1];
            for k in 0..px {
                t.src[i * px + k] = t.src[(outputs - 1) * px + k];
            }
        }
        count += 1;
        idx += outputs;
    }
    let tiles = &tiles[..count];
    let lanes = S::LANES;
    let (filter, bias) = (job.filter.as_ptr(), job.bias.as_ptr());
    let mut c0 = 0;
    // The three block loops: a block's `NV * LANES` (or LANES) channels
    // from c0 are inside the filter's rows and the bias; the padded tail
    // holds `steps` rows of LANES and a LANES bias.
    while c_out - c0 >= NV * lanes {
        let b = Block { w: filter.wrapping_add(c0), wstride: c_out, bias: bias.wrapping_add(c0), c0, nvalid: lanes };
        // SAFETY: c0 + NV * LANES <= c_out (the loop condition); the tiles' contract is ours.
        unsafe { tiles_for::<S, NV>(isa, conv, tiles, b) };
        c0 += NV * lanes;
    }
    while c_out - c0 >= lanes {
        let b = Block { w: filter.wrapping_add(c0), wstride: c_out, bias: bias.wrapping_add(c0), c0, nvalid: lanes };
        // SAFETY: c0 + LANES <= c_out (the loop condition); the tiles' contract is ours.
        unsafe { tiles_for::<S, 1>(isa, conv, tiles, b) };
        c0 += lanes;
    }
    if c0 < c_out {
        let (wt, bt) = job.tail.split_at(conv.xo.len() * lanes);
        let b = Block { w: wt.as_ptr(), wstride: lanes, bias: bt.as_ptr(), c0, nvalid: c_out - c0 };
        // SAFETY: the padded tail has LANES floats per step and a LANES bias;
        // `nvalid` lanes are stored; the tiles' contract is ours.
        unsafe { tiles_for::<S, 1>(isa, conv, tiles, b) };
    }
}

/// Runs block `b` over `tiles`, each on the kernel of its size.
///
/// # Safety
///
/// As [`chunk`]; `b` addresses `NV * LANES` channels of filter rows and bias.
#[inline(always)]
unsafe fn tiles_for<S: Isa, const NV: usize>(isa: S, conv: &BlockedConv, tiles: &[Tile], b: Block) {
    let pool = conv.pool == FusedPool::Max2x2;
    let relu = conv.activation == Activation::Relu;
    for t in tiles {
        debug_assert!([2, 4, 6, 8].contains(&t.p));
        // SAFETY: forwarded contract; `t.p` is one of the level's sizes.
        unsafe {
            match t.p {
                2 => tile::<S, 2, NV>(isa, t, &conv.xo, b, pool, relu),
                4 => tile::<S, 4, NV>(isa, t, &conv.xo, b, pool, relu),
                6 => tile::<S, 6, NV>(isa, t, &conv.xo, b, pool, relu),
                _ => tile::<S, 8, NV>(isa, t, &conv.xo, b, pool, relu),
            }
        }
    }
}

/// One tile: `P` pixels by `NV` vectors, accumulated over every reduction
/// step in order, then the epilogue and the stores.
///
/// # Safety
///
/// `t.src[p] + xo[r]` readable for every pixel and step; `b.w + r *
/// b.wstride` readable for `NV * LANES` floats and `b.bias` likewise;
/// `t.dst[i] + b.c0` writable for the block's channels, for every output
/// slot of the tile.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // constant-trip index loops: the accumulators stay in registers
unsafe fn tile<S: Isa, const P: usize, const NV: usize>(
    isa: S,
    t: &Tile,
    xo: &[isize],
    b: Block,
    pool: bool,
    relu: bool,
) {
    let lanes = S::LANES;
    let mut src = [t.src[0]; P];
    src.copy_from_slice(&t.src[..P]);
    let mut seed = [isa.zero(); NV];
    for (v, s) in seed.iter_mut().enumerate() {
        // SAFETY: the bias is readable for NV * LANES floats (contract).
        *s = unsafe { isa.load(b.bias.add(v * lanes)) };
    }
    let mut acc = [seed; P];
    let mut w = b.w;
    for &x_off in xo {
        let mut wv = [isa.zero(); NV];
        for (v, x) in wv.iter_mut().enumerate() {
            // SAFETY: this step's row holds NV * LANES readable floats (contract).
            *x = unsafe { isa.load(w.add(v * lanes)) };
        }
        for p in 0..P {
            // SAFETY: src[p] + x_off is inside the source (contract).
            let x = isa.splat(unsafe { *src[p].offset(x_off) });
            for v in 0..NV {
                acc[p][v] = x.mul_add(wv[v], acc[p][v]);
            }
        }
        w = w.wrapping_add(b.wstride);
    }
    let zero = isa.zero();
    if relu {
        for p in 0..P {
            for v in 0..NV {
                acc[p][v] = acc[p][v].max(zero);
            }
        }
    }
    // Every loop below has a constant trip count, so the accumulators stay
    // in registers (a runtime index would put the array in memory, and the
    // reduction loop would store it on every step). Slots past
    // the tile's outputs repeat the last output (same pixels, same pointer): they
    // store the same values again.
    if pool {
        for i in 0..P / 4 {
            for v in 0..NV {
                // `a.max(m)` is `a > m ? a : m`: the first strict maximum in
                // row-major window order, as the max-pool kernel picks it.
                let mut m = acc[i * 4][v];
                for k in 1..4 {
                    m = acc[i * 4 + k][v].max(m);
                }
                // SAFETY: t.dst[i] + c0 has the block's channels writable (contract).
                unsafe { put(m, t.dst[i].wrapping_add(b.c0 + v * lanes), b.nvalid, lanes) };
            }
        }
    } else {
        for (i, row) in acc.iter().enumerate() {
            for (v, &a) in row.iter().enumerate() {
                // SAFETY: as above.
                unsafe { put(a, t.dst[i].wrapping_add(b.c0 + v * lanes), b.nvalid, lanes) };
            }
        }
    }
}

/// Stores the first `nvalid` lanes of `v` (a vector of `lanes`) at `out`.
///
/// # Safety
///
/// `out` is writable for `nvalid <= LANES` floats.
#[inline(always)]
unsafe fn put<V: Vf32>(v: V, out: *mut f32, nvalid: usize, lanes: usize) {
    let mut tmp = [0f32; 16];
    // SAFETY: LANES writable floats when nvalid == LANES (contract), or tmp
    // (16 >= LANES floats) and then `nvalid` writable floats.
    unsafe {
        if nvalid == lanes {
            v.store(out);
        } else {
            v.store(tmp.as_mut_ptr());
            std::ptr::copy_nonoverlapping(tmp.as_ptr(), out, nvalid);
        }
    }
}

/// One-shot blocked convolution on an explicit SIMD level, on the calling
/// thread. For repeated calls, keep a [`BlockedConv`].
#[allow(clippy::too_many_arguments)] // the conv's arguments, plus the level and the pool
pub fn conv2d_blocked_at(
    level: SimdLevel,
    shape: &ConvShape,
    input: &[f32],
    filter: &[f32],
    bias: Option<&[f32]>,
    activation: Activation,
    pool: FusedPool,
    output: &mut [f32],
) -> Result<()> {
    BlockedConv::new_at(level, shape, activation, pool)?.run(input, shape.n, filter, bias, output)
}

/// [`conv2d_blocked_at`] on the process-wide SIMD level.
pub fn conv2d_blocked(
    shape: &ConvShape,
    input: &[f32],
    filter: &[f32],
    bias: Option<&[f32]>,
    activation: Activation,
    pool: FusedPool,
    output: &mut [f32],
) -> Result<()> {
    conv2d_blocked_at(crate::simd::try_level()?, shape, input, filter, bias, activation, pool, output)
}
