//! Backward-filter (and bias gradient) of `conv + relu + 2x2 max pool`
//! straight from the pooled gradient: the training counterpart of the fused
//! forward, for a conv whose input needs no gradient (the first layer, whose
//! input is the data).
//!
//! # What it replaces
//!
//! The unfused backward of `conv(relu) -> MaxPooling2D((2, 2))` scatters the
//! pooled gradient into a zeroed map of the conv's full output size (four
//! times the pooled size), masks it with the relu, sums it per channel for
//! the bias gradient, then runs the backward-filter pass over that map,
//! three quarters of which is zeros. Here none of that map exists: every
//! pooled gradient element reaches exactly one conv output (its window's
//! argmax), so
//!
//! `dW[tap, co] = sum over pooled elements e of g(e) * x[argmax pixel of e + tap]`,
//! `db[co] = sum over pooled elements e of g(e)`,
//!
//! with `g(e)` the pooled gradient, zeroed where the relu was off (the
//! pooled output is `<= 0`: it is the relu output at the argmax).
//!
//! # Algorithm
//!
//! Per pooled pixel and per block of one vector of output channels: the
//! pooled gradient vector is masked by the relu and split into four vectors,
//! one per window slot (lane `l` of slot `k` holds `g` where the argmax of
//! channel `l` is slot `k`, zero elsewhere: a compare of the stored argmax
//! with the slot's index, which LLVM vectorises); then for each of the
//! slot's conv pixel's reduction taps (`(ky, kx, ci)`, in HWIO order) one
//! broadcast input value times the slot vector is added into that tap's
//! accumulator. The accumulators of a group of [`TAPS_PER_GROUP`] taps (all
//! nine of a 3x3 single-channel filter) and of the bias stay in registers
//! over every pooled pixel of a chunk; larger reductions run in several
//! groups. Nothing of the conv's output size is read or written.
//!
//! # Determinism
//!
//! The pooled rows (flattened over images) are split into fixed chunks of
//! about [`PIXELS_PER_CHUNK`] pooled pixels, chosen from the shape alone.
//! Each chunk writes its own partial filter and bias gradient; the partials
//! are then summed in chunk order on the calling thread. No atomics, no
//! dependence on the pool size: bit-identical for any number of threads.
//!
//! | level | lanes | accumulators in registers |
//! |---|---|---|
//! | AVX-512 | 16 | 9 taps + bias |
//! | AVX2+FMA | 8 | 9 taps + bias |
//! | portable (`wide`) | 8 | 9 taps + bias |
//!
//! The oracle is `pool::max_pool2d_backward` then the relu mask then
//! [`reference::backward_filter`](super::super::reference::backward_filter)
//! and `backward_bias` (f64); the tests check every level against it.

use crate::arch::{scratch_f32, scratch_isize, FtzGuard, Isa, SendPtr, Slot, Token, Vf32};
#[cfg(target_arch = "x86_64")]
use crate::arch::{Avx2, Avx512};
use crate::conv::ConvShape;
use crate::error::check_len;
use crate::pool::{PoolOptions, PoolShape};
use crate::simd::SimdLevel;
use crate::{Error, Result};
use rayon::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Reduction taps whose accumulators are held in registers at once: the
/// nine of a 3x3 filter over one input channel (the chapter's first layer).
/// With the bias accumulator and the four slot vectors that is 14 vector
/// registers, within AVX2's 16. A reduction that is not a multiple of it is
/// padded with taps whose result is dropped.
pub const TAPS_PER_GROUP: usize = 9;

/// Pooled pixels per chunk (rounded to whole pooled rows): each chunk makes
/// one partial filter gradient, so this fixes the reduction order. 512
/// pixels (39 rows of the chapter's 13x13 pooled map) make 22 chunks at
/// batch 64, enough for two or three threads to balance, while the partial
/// sums stay negligible (22 x 320 floats).
pub const PIXELS_PER_CHUNK: usize = 512;

/// The pooled gradient and what the forward pass saved for it.
#[derive(Clone, Copy, Debug)]
pub struct PooledGradient<'a> {
    /// `d loss / d pooled output`, NHWC `[n, out_h / 2, out_w / 2, c_out]`.
    pub grad: &'a [f32],
    /// The pool's argmax, as `pool::max_pool2d_forward` writes it: per
    /// pooled element, the index of the winning conv output within its
    /// image (`(y * out_w + x) * c_out + channel`).
    pub argmax: &'a [u32],
    /// The pool's output (the same length as `grad`) when the conv has a
    /// fused relu: the gradient is dropped where it is `<= 0` (the relu was
    /// off at the argmax). `None` for a linear conv.
    pub relu_output: Option<&'a [f32]>,
}

/// Why `shape` followed by the max pool `pool` cannot run
/// [`conv2d_backward_filter_max_pooled_at`], if it cannot: the conv must be
/// dense with no padding, the pool a `valid` 2x2 window of stride 2 over the
/// conv's whole output (an odd last row or column is dropped, as Keras does).
pub fn max_pooled_supports(shape: &ConvShape, pool: &PoolShape) -> std::result::Result<(), String> {
    if shape.groups != 1 {
        return Err(format!("{} groups: the fused backward runs dense convolutions", shape.groups));
    }
    if shape.pad_top + shape.pad_bottom + shape.pad_left + shape.pad_right != 0 {
        return Err("padding: the fused backward runs `valid` convolutions".into());
    }
    let (oh, ow) = (shape.out_h(), shape.out_w());
    if (pool.n, pool.h, pool.w, pool.c) != (shape.n, oh, ow, shape.c_out) {
        return Err(format!(
            "the pool's input {}x{}x{}x{} is not the conv's output {}x{oh}x{ow}x{}",
            pool.n, pool.h, pool.w, pool.c, shape.n, shape.c_out
        ));
    }
    let padded = pool.pad_top + pool.pad_bottom + pool.pad_left + pool.pad_right != 0;
    if (pool.ph, pool.pw, pool.stride_h, pool.stride_w) != (2, 2, 2, 2) || padded {
        return Err(format!("pool {pool}: the fused backward runs a valid 2x2 pool of stride 2"));
    }
    if pool.options != PoolOptions::default() || pool.out_h() != oh / 2 || pool.out_w() != ow / 2 {
        return Err(format!("pool {pool}: dilation and ceil mode are not fused"));
    }
    let item = oh.checked_mul(ow).and_then(|v| v.checked_mul(shape.c_out));
    if item.is_none_or(|v| v > u32::MAX as usize / 2) {
        return Err("the conv output of one image is too large for u32 argmax indices".into());
    }
    Ok(())
}

/// The filter gradient (`grad_filter`, HWIO, overwritten) and bias gradient
/// (`grad_bias`, `[c_out]`, overwritten) of the conv `shape` (with the
/// batch's input `input`, NHWC), from the gradient of the 2x2 max pool that
/// follows it (see the module doc), on an explicit SIMD level.
///
/// Errors: an [`Error::Simd`] if this CPU cannot run `level`, an
/// [`Error::Unsupported`] for a shape [`max_pooled_supports`] refuses, a
/// length mismatch for any buffer, and an [`Error::InvalidShape`] when an
/// argmax is not in its own window (then the outputs hold no meaning).
///
/// ```
/// use convnet_kernels::conv::fused::{conv2d_backward_filter_max_pooled_at, PooledGradient};
/// use convnet_kernels::conv::{ConvShape, Padding};
/// use convnet_kernels::pool::PoolShape;
/// use convnet_kernels::simd::SimdLevel;
/// // 4x4x1 input, one 3x3 filter: a 2x2 conv output, pooled to 1x1.
/// let shape = ConvShape::new(1, 4, 4, 1, 1, 3, 3)?;
/// let pool = PoolShape::new(1, 2, 2, 1, (2, 2), (2, 2), Padding::Valid)?;
/// let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
/// // The max was conv output (1, 0): its window starts at input pixel (1, 0).
/// let pooled = PooledGradient { grad: &[2.0], argmax: &[2], relu_output: Some(&[1.0]) };
/// let (mut dw, mut db) = ([0.0; 9], [0.0]);
/// conv2d_backward_filter_max_pooled_at(SimdLevel::Portable, &shape, &pool, &x, pooled, &mut dw, Some(&mut db))?;
/// assert_eq!(dw, [8.0, 10.0, 12.0, 16.0, 18.0, 20.0, 24.0, 26.0, 28.0]);
/// assert_eq!(db, [2.0]);
/// # Ok::<(), convnet_kernels::Error>(())
/// ```
pub fn conv2d_backward_filter_max_pooled_at(
    level: SimdLevel,
    shape: &ConvShape,
    pool: &PoolShape,
    input: &[f32],
    pooled: PooledGradient<'_>,
    grad_filter: &mut [f32],
    grad_bias: Option<&mut [f32]>,
) -> Result<()> {
    let token = Token::new(level)?;
    shape.validate()?;
    max_pooled_supports(shape, pool).map_err(|reason| Error::Unsupported {
        algo: "max_pooled",
        pass: "backward_filter",
        shape: shape.to_string(),
        reason,
    })?;
    let pooled_len = pool.output_len();
    check_len("input", input.len(), shape.input_len(), shape)?;
    check_len("pooled gradient", pooled.grad.len(), pooled_len, pool)?;
    check_len("argmax", pooled.argmax.len(), pooled_len, pool)?;
    if let Some(y) = pooled.relu_output {
        check_len("pooled output", y.len(), pooled_len, pool)?;
    }
    check_len("filter gradient", grad_filter.len(), shape.filter_len(), shape)?;
    if let Some(b) = &grad_bias {
        check_len("bias gradient", b.len(), shape.c_out, shape)?;
    }
    let _ftz = FtzGuard::new();
    let lanes = lanes(level);
    let taps = shape.kh * shape.kw * shape.c_in;
    let groups = taps.div_ceil(TAPS_PER_GROUP);
    let c_pad = shape.c_out.div_ceil(lanes) * lanes;
    let (ph, pw) = (pool.out_h(), pool.out_w());
    let rows = shape.n * ph;
    let rows_per_chunk = (PIXELS_PER_CHUNK / pw.max(1)).max(1);
    let chunks = rows.div_ceil(rows_per_chunk);
    // Per chunk: `[groups * TAPS_PER_GROUP][c_pad]` filter partials, then `[c_pad]` bias.
    let per_chunk = (groups * TAPS_PER_GROUP + 1) * c_pad;
    let mut partial = scratch_f32(Slot::Partial, chunks * per_chunk);
    // Source offsets of each tap from its conv pixel, padded with zeros (a
    // valid read whose accumulator is never stored) to whole groups.
    let mut xo = scratch_isize(Slot::Table, groups * TAPS_PER_GROUP);
    xo.fill(0);
    xo.iter_mut().zip(super::tap_offsets(shape)).for_each(|(dst, off)| *dst = off);
    let (oh_ow_c, c_out) = (shape.out_w() * shape.c_out, shape.c_out);
    let job = Job {
        shape,
        ph,
        pw,
        rows,
        rows_per_chunk,
        per_chunk,
        c_pad,
        xo: &xo,
        // Window slots (dy, dx) in row-major order: input offsets and argmax offsets.
        slot_x: [0, 1, 2, 3]
            .map(|k| (((k / 2) * shape.stride_h * shape.w + (k % 2) * shape.stride_w) * shape.c_in) as isize),
        slot_arg: [0, c_out, oh_ow_c, oh_ow_c + c_out].map(|v| v as u32),
        input,
        pooled,
        partial: SendPtr(partial.as_mut_ptr()),
        hits: AtomicUsize::new(0),
    };
    (0..chunks).into_par_iter().for_each(|chunk| {
        let _ftz = FtzGuard::new();
        job.chunk_at(token, chunk)
    });
    let blocks = c_pad / lanes;
    if job.hits.load(Ordering::Relaxed) != pooled_len / c_out * blocks * lanes {
        let bad = pooled.argmax.iter().enumerate().find(|&(e, &a)| !job.in_window(e, a)).map_or(0, |(_, &a)| a);
        return Err(Error::InvalidShape {
            shape: pool.to_string(),
            reason: format!("argmax index {bad} outside its window"),
        });
    }
    // The partials, summed in chunk order.
    grad_filter.fill(0.0);
    let mut bias_acc = [0f32; 0];
    let bias: &mut [f32] = match grad_bias {
        Some(b) => {
            b.fill(0.0);
            b
        }
        None => &mut bias_acc,
    };
    for part in partial.chunks_exact(per_chunk) {
        for (dst, src) in grad_filter.chunks_exact_mut(c_out).zip(part.chunks_exact(c_pad)) {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d += s;
            }
        }
        for (d, &s) in bias.iter_mut().zip(&part[groups * TAPS_PER_GROUP * c_pad..]) {
            *d += s;
        }
    }
    Ok(())
}

/// [`conv2d_backward_filter_max_pooled_at`] on the process-wide SIMD level.
pub fn conv2d_backward_filter_max_pooled(
    shape: &ConvShape,
    pool: &PoolShape,
    input: &[f32],
    pooled: PooledGradient<'_>,
    grad_filter: &mut [f32],
    grad_bias: Option<&mut [f32]>,
) -> Result<()> {
    conv2d_backward_filter_max_pooled_at(crate::simd::try_level()?, shape, pool, input, pooled, grad_filter, grad_bias)
}

/// Vector lanes at `level`.
fn lanes(level: SimdLevel) -> usize {
    match level {
        SimdLevel::Avx512 => 16,
        SimdLevel::Avx2 | SimdLevel::Portable => 8,
    }
}

/// One call, shared by its chunks.
struct Job<'a> {
    shape: &'a ConvShape,
    /// Pooled map size.
    ph: usize,
    pw: usize,
    /// Pooled rows of the batch (`n * ph`), and per chunk.
    rows: usize,
    rows_per_chunk: usize,
    /// Floats of one chunk's partials, and the padded channel count.
    per_chunk: usize,
    c_pad: usize,
    /// Input offsets of the reduction taps from a conv pixel (whole groups).
    xo: &'a [isize],
    /// Input offsets of the four window slots from the window's first pixel.
    slot_x: [isize; 4],
    /// Argmax offsets of the four window slots from the window's first element.
    slot_arg: [u32; 4],
    input: &'a [f32],
    pooled: PooledGradient<'a>,
    /// `chunks * per_chunk` floats; chunk `c` writes only its own part.
    partial: SendPtr<f32>,
    /// Lanes whose argmax matched a slot of their window, over all chunks.
    hits: AtomicUsize,
}

impl Job<'_> {
    /// True when pooled element `e`'s argmax `a` is an element of its own window.
    fn in_window(&self, e: usize, a: u32) -> bool {
        let c = self.shape.c_out;
        let (ch, px) = (e % c, e / c % (self.ph * self.pw));
        let first = ((px / self.pw * 2) * self.shape.out_w() + px % self.pw * 2) * c + ch;
        self.slot_arg.iter().any(|&k| first as u64 + k as u64 == a as u64)
    }

    fn chunk_at(&self, token: Token, c: usize) {
        match token {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the token proves AVX-512F/AVX2/FMA; the entry point checked every length.
            Token::Avx512(isa) => unsafe { chunk_avx512(isa, self, c) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the token proves AVX2/FMA; the entry point checked every length.
            Token::Avx2(isa) => unsafe { chunk_avx2(isa, self, c) },
            // SAFETY: the entry point checked every length.
            Token::Portable(isa) => unsafe { chunk(isa, self, c) },
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn chunk_avx512(isa: Avx512, job: &Job, c: usize) {
    // SAFETY: as `chunk`.
    unsafe { chunk(isa, job, c) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn chunk_avx2(isa: Avx2, job: &Job, c: usize) {
    // SAFETY: as `chunk`.
    unsafe { chunk(isa, job, c) }
}

/// The partial gradients of pooled rows `c * rows_per_chunk ..` into chunk
/// `c`'s part of `job.partial`: per channel block, per tap group, every
/// pooled pixel of the chunk in order.
///
/// # Safety
///
/// `job` comes from the entry point: every length checked, the shape
/// accepted by [`max_pooled_supports`] (so every tap of every window slot
/// of every pooled pixel is inside `input`), and no other chunk writes
/// chunk `c`'s partials.
#[inline(always)]
unsafe fn chunk<S: Isa>(isa: S, job: &Job, c: usize) {
    let s = job.shape;
    let c_out = s.c_out;
    let first_row = c * job.rows_per_chunk;
    let last_row = (first_row + job.rows_per_chunk).min(job.rows);
    // SAFETY: chunk `c`'s part lies inside the `chunks * per_chunk` floats.
    let part = unsafe { job.partial.get().add(c * job.per_chunk) };
    let bias_part = job.xo.len() * job.c_pad;
    let mut hits = 0usize;
    for c0 in (0..c_out).step_by(S::LANES) {
        let nvalid = S::LANES.min(c_out - c0);
        for (grp, xo) in job.xo.chunks_exact(TAPS_PER_GROUP).enumerate() {
            let xo: &[isize; TAPS_PER_GROUP] = xo.try_into().expect("whole groups");
            let mut acc = [isa.zero(); TAPS_PER_GROUP];
            let mut acc_bias = isa.zero();
            for row in first_row..last_row {
                let (img, py) = (row / job.ph, row % job.ph);
                for px in 0..job.pw {
                    let e = (row * job.pw + px) * c_out + c0;
                    let arg0 = ((2 * py * s.out_w() + 2 * px) * c_out + c0) as u32;
                    let (gk, g, n) = slots::<S>(job, e, arg0, nvalid);
                    hits += n;
                    let base = (((img * s.h + 2 * py * s.stride_h) * s.w + 2 * px * s.stride_w) * s.c_in) as isize;
                    let src = job.input.as_ptr();
                    for (slot, &slot_x) in gk.iter().zip(&job.slot_x) {
                        // SAFETY: 16 >= LANES floats in the slot's array.
                        let gv = unsafe { isa.load(slot.as_ptr()) };
                        // SAFETY: the slot's conv pixel is an output of the
                        // conv, so its window's taps are inside `input`.
                        let px_src = unsafe { src.offset(base + slot_x) };
                        for (a, &o) in acc.iter_mut().zip(xo) {
                            // SAFETY: as above (padding taps read offset 0).
                            let x = isa.splat(unsafe { *px_src.offset(o) });
                            *a = x.mul_add(gv, *a);
                        }
                    }
                    if grp == 0 {
                        // SAFETY: 16 >= LANES floats in g.
                        acc_bias = acc_bias.add(unsafe { isa.load(g.as_ptr()) });
                    }
                }
            }
            for (t, a) in acc.iter().enumerate() {
                // SAFETY: row `grp * TAPS_PER_GROUP + t` of the partial has
                // c_pad >= c0 + LANES floats.
                unsafe { a.store(part.add((grp * TAPS_PER_GROUP + t) * job.c_pad + c0)) };
            }
            if grp == 0 {
                // SAFETY: the bias row has c_pad >= c0 + LANES floats.
                unsafe { acc_bias.store(part.add(bias_part + c0)) };
            }
        }
    }
    // Hits were counted once per tap group; keep one group's worth.
    job.hits.fetch_add(hits / (job.xo.len() / TAPS_PER_GROUP), Ordering::Relaxed);
}

/// Pooled element `e .. e + nvalid` (one block of channels of one pooled
/// pixel) split by window slot: lane `l` of slot `k` is the (relu-masked)
/// gradient where the argmax of channel `c0 + l` is slot `k` of its window
/// (`arg0 + l + slot_arg[k]`), zero elsewhere; also the masked gradient
/// itself and the number of lanes whose argmax matched a slot (lanes past
/// `nvalid` count as matched, with a zero gradient). Written as plain lane
/// loops over fixed arrays, which LLVM vectorises at each level.
#[inline(always)]
fn slots<S: Isa>(job: &Job, e: usize, arg0: u32, nvalid: usize) -> ([[f32; 16]; 4], [f32; 16], usize) {
    let (mut g, mut y, mut am) = ([0f32; 16], [1f32; 16], [0u32; 16]);
    let p = job.pooled;
    if nvalid == S::LANES {
        g[..S::LANES].copy_from_slice(&p.grad[e..e + S::LANES]);
        am[..S::LANES].copy_from_slice(&p.argmax[e..e + S::LANES]);
        if let Some(r) = p.relu_output {
            y[..S::LANES].copy_from_slice(&r[e..e + S::LANES]);
        }
    } else {
        g[..nvalid].copy_from_slice(&p.grad[e..e + nvalid]);
        am[..nvalid].copy_from_slice(&p.argmax[e..e + nvalid]);
        for (l, a) in am.iter_mut().enumerate().skip(nvalid) {
            *a = arg0.wrapping_add(l as u32); // slot 0, with a zero gradient
        }
        if let Some(r) = p.relu_output {
            y[..nvalid].copy_from_slice(&r[e..e + nvalid]);
        }
    }
    let mut gk = [[0f32; 16]; 4];
    let mut hits = 0u32;
    for l in 0..S::LANES {
        // The relu's gradient at 0 is 0; a NaN output keeps the gradient.
        let gl = if y[l] <= 0.0 { 0.0 } else { g[l] };
        g[l] = gl;
        let rel = am[l].wrapping_sub(arg0.wrapping_add(l as u32));
        let mut hit = false;
        for (slot, &off) in gk.iter_mut().zip(&job.slot_arg) {
            let on = rel == off;
            slot[l] = if on { gl } else { 0.0 };
            hit |= on;
        }
        hits += u32::from(hit);
    }
    (gk, g, hits as usize)
}
