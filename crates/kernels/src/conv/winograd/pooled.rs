//! Winograd forward with bias, activation and a 2x2 max pool fused into the
//! output transform: `y = maxpool2x2(act(conv(x, w) + b))` for inference,
//! without ever writing the convolution's output map.
//!
//! **What it computes.** A 3x3, stride-1, undilated, dense (`groups == 1`)
//! convolution with any padding (what [`super`] runs), a
//! [`Activation::Linear`] or [`Activation::Relu`] epilogue, then Keras's
//! `MaxPooling2D((2, 2))` (window 2x2, stride 2, `valid`): NHWC input, HWIO
//! filter, NHWC output `[n, out_h / 2, out_w / 2, c_out]`. An odd last conv
//! row or column, which the pool drops, is not computed.
//!
//! **How.** The driver is Winograd's own block driver (input transform,
//! `t*t` GEMMs, then this kernel's output transform as the block's
//! epilogue), with inference-sized blocks and the problem cut to the `2 * (out_h / 2) x
//! 2 * (out_w / 2)` conv pixels the pool reads. Output tiles start at
//! multiples of `m` (4 for F(4x4, 3x3), 2 for F(2x2, 3x3)), which are even,
//! so an F4 tile holds four whole pooling windows and an F2 tile exactly
//! one. The output transform computes the tile's `m x m` conv values in
//! registers exactly as the unfused kernel does (same operations, same
//! order: `A^T M A`, `+ bias`, `max(y, 0)`), then reduces each window in
//! row-major order with `v > m ? v : m` (the vector `max`, an explicit
//! comparison on scalar lanes), the max-pool kernels' "first strict maximum"
//! rule. Only the pooled vectors are stored, and the rows of a tile whose
//! windows fall past the pooled map's bottom edge are not transformed.
//!
//! **Exactness.** On every SIMD level the result is bit-identical to
//! [`conv2d_forward_at`](crate::conv::conv2d_forward_at) with the same
//! Winograd variant followed by
//! [`max_pool2d_forward_at`](crate::pool::max_pool2d_forward_at) (and to
//! [`max_pool_2x2_at`](crate::conv::fused::max_pool_2x2_at)): each conv
//! value is the same chain of operations on the same `M`, whose GEMMs and
//! input transforms are the unfused kernel's own code, and the tile grid is
//! the same (tiles start at multiples of `m` either way).
//!
//! **Why.** In the chapter's model at batch 64, `conv2d_1` (13x13x32 -> 64,
//! Winograd F4) then its pool wrote an 11x11x64 map (31 KB per image) and
//! read it back; fused, the layer stores a 5x5x64 map and the pool pass is
//! gone (`docs/ALGORITHMS.md`, `docs/BENCHMARKS.md`).
//!
//! Threads, determinism, denormals and SIMD as in [`super`]: fixed blocks of
//! tiles independent of the thread count, one task per block, flush-to-zero
//! while the kernel runs, one instruction-set token per call.

use super::tiles::OutputArgs;
use super::transforms::{at_f2, at_f4};
use super::{forward_problem, pack_groups, run, run_blocks, Pass, Problem, Variant};
use crate::activation::Activation;
use crate::arch::{scratch_f32, FtzGuard, Isa, Scalar, SendPtr, Slot, Token, Vf32};
#[cfg(target_arch = "x86_64")]
use crate::arch::{Avx2, Avx512};
use crate::conv::fused::FusedPool;
use crate::conv::{ConvAlgo, ConvShape};
use crate::error::check_len;
use crate::simd::SimdLevel;
use crate::{Error, Result};

/// Bytes of transformed input `V` plus products `M` per block of tiles (one
/// rayon task) for inference: half of a Zen 4 core's 1 MiB L2, so `V`, `M`
/// and the filter's `U[e]` panels stay in L2 between the three stages.
/// Measured on the chapter's conv2d_1 at batch 64 (13x13x32 -> 64, F4, one
/// thread, min of 300 calls, loaded machine): 72 tiles per block (the
/// training driver's 2 MiB / 8-block split) 0.74-0.77 ms, 36 tiles (this
/// bound) 0.62-0.63 ms, 12 tiles 0.64-0.71 ms, 144 tiles 0.94-1.0 ms.
const INFERENCE_BLOCK_BYTES: usize = 512 << 10;

/// Blocks wanted at least when there are enough tiles: one per core of the
/// two-core machines the inference targets were set on, so both cores work
/// on a small layer (the chapter's conv2d_2 has one tile per image). Fixed,
/// not the thread count, so the partition never depends on the pool (and
/// the result would not either: every output is one FMA chain in a fixed
/// order, whatever the blocking).
const INFERENCE_MIN_BLOCKS: usize = 2;

/// Why `algo` cannot run `shape` with `pool` on this kernel, if it cannot:
/// `algo` must be [`ConvAlgo::WinogradF2`] or [`ConvAlgo::WinogradF4`], the
/// convolution dense, 3x3, stride 1, undilated, and, with
/// [`FusedPool::Max2x2`], its output at least 2x2.
pub fn supports(algo: ConvAlgo, shape: &ConvShape, pool: FusedPool) -> std::result::Result<(), String> {
    if !matches!(algo, ConvAlgo::WinogradF2 | ConvAlgo::WinogradF4) {
        return Err(format!("{algo}: the pooled Winograd kernel runs winograd_f2 or winograd_f4"));
    }
    if shape.groups != 1 {
        return Err(format!("{} groups: the pooled Winograd kernel runs dense convolutions", shape.groups));
    }
    super::supports(shape)?;
    if pool == FusedPool::Max2x2 && (shape.out_h() < 2 || shape.out_w() < 2) {
        return Err(format!("a {}x{} output is smaller than the 2x2 pooling window", shape.out_h(), shape.out_w()));
    }
    Ok(())
}

/// Length of the output of `shape` with `pool`: `n * (out_h / 2) * (out_w /
/// 2) * c_out` pooled, `n * out_h * out_w * c_out` not.
pub fn output_len(shape: &ConvShape, pool: FusedPool) -> usize {
    match pool {
        FusedPool::Max2x2 => shape.n * (shape.out_h() / 2) * (shape.out_w() / 2) * shape.c_out,
        FusedPool::None => shape.output_len(),
    }
}

/// `output = maxpool2x2(activation(conv(input, filter) + bias))` on Winograd
/// `algo` (F2 or F4), on an explicit SIMD level; with [`FusedPool::None`],
/// `activation(conv(input, filter) + bias)` (the Winograd forward, blocked
/// for inference).
///
/// `input` is NHWC `[n, h, w, c_in]`, `filter` HWIO `[3, 3, c_in, c_out]`,
/// `bias` `[c_out]`, `output` NHWC `[n, out_h / 2, out_w / 2, c_out]` pooled,
/// `[n, out_h, out_w, c_out]` not (overwritten; see [`output_len`]). Errors:
/// a level this CPU cannot run ([`Error::Simd`]), a shape the kernel cannot
/// run ([`Error::Unsupported`], see [`supports`]), wrong slice lengths.
///
/// ```
/// use convnet_kernels::activation::Activation;
/// use convnet_kernels::conv::fused::FusedPool;
/// use convnet_kernels::conv::winograd::pooled::conv2d_winograd_pooled_at;
/// use convnet_kernels::conv::{ConvAlgo, ConvShape};
/// use convnet_kernels::simd::SimdLevel;
/// // 4x4x1 input, one 3x3 filter of ones: a 2x2 map, max-pooled to 1x1.
/// let s = ConvShape::new(1, 4, 4, 1, 1, 3, 3)?;
/// let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
/// let mut y = [0.0];
/// let (algo, act, pool) = (ConvAlgo::WinogradF4, Activation::Relu, FusedPool::Max2x2);
/// conv2d_winograd_pooled_at(SimdLevel::Portable, algo, &s, &x, &[1.0; 9], Some(&[0.5]), act, pool, &mut y)?;
/// assert!((y[0] - 90.5).abs() < 1e-3); // the bottom-right window sum, 90, plus the bias
/// # Ok::<(), convnet_kernels::Error>(())
/// ```
#[allow(clippy::too_many_arguments)] // conv2d_forward_at's arguments, and the pool
pub fn conv2d_winograd_pooled_at(
    level: SimdLevel,
    algo: ConvAlgo,
    shape: &ConvShape,
    input: &[f32],
    filter: &[f32],
    bias: Option<&[f32]>,
    activation: Activation,
    pool: FusedPool,
    output: &mut [f32],
) -> Result<()> {
    let token = Token::new(level)?;
    shape.validate()?;
    supports(algo, shape, pool).map_err(|reason| Error::Unsupported {
        algo: algo.name(),
        pass: "forward (pooled)",
        shape: shape.to_string(),
        reason,
    })?;
    check_len("input", input.len(), shape.input_len(), shape)?;
    check_len("filter", filter.len(), shape.filter_len(), shape)?;
    if let Some(b) = bias {
        check_len("bias", b.len(), shape.c_out, shape)?;
    }
    check_len("output", output.len(), output_len(shape, pool), shape)?;
    if output.is_empty() {
        return Ok(());
    }
    forward_pooled(token, algo, shape, (input, filter, bias), activation, pool, output);
    Ok(())
}

/// [`conv2d_winograd_pooled_at`] on the process-wide SIMD level.
#[allow(clippy::too_many_arguments)] // conv2d_forward's arguments, and the pool
pub fn conv2d_winograd_pooled(
    algo: ConvAlgo,
    shape: &ConvShape,
    input: &[f32],
    filter: &[f32],
    bias: Option<&[f32]>,
    activation: Activation,
    pool: FusedPool,
    output: &mut [f32],
) -> Result<()> {
    conv2d_winograd_pooled_at(crate::simd::try_level()?, algo, shape, input, filter, bias, activation, pool, output)
}

/// The checked call: packs the filter and runs the blocks on the Winograd
/// block driver with the inference block size and, pooled, the pooled
/// output transform as the epilogue.
fn forward_pooled(
    token: Token,
    algo: ConvAlgo,
    s: &ConvShape,
    (input, filter, bias): (&[f32], &[f32], Option<&[f32]>),
    activation: Activation,
    pool: FusedPool,
    output: &mut [f32],
) {
    let _ftz = FtzGuard::new();
    let pooled = pool == FusedPool::Max2x2;
    let mut problem = forward_problem(algo, s);
    debug_assert_eq!(problem.groups, 1);
    if pooled {
        // Only the conv pixels the pool reads: the first 2 * (out_h / 2) rows
        // and 2 * (out_w / 2) columns.
        problem.out_h = s.out_h() / 2 * 2;
        problem.out_w = s.out_w() / 2 * 2;
    }
    let mut packed = scratch_f32(Slot::Filter, problem.packed_len(token));
    pack_groups(&problem, token, filter, false, &mut packed);
    let relu = activation == Activation::Relu;
    let per_block = problem.tiles_per_block(problem.ldm(token), INFERENCE_BLOCK_BYTES, INFERENCE_MIN_BLOCKS);
    let p = &problem;
    let pass = Pass { p, token, input, packed: &packed, per_block, bias };
    if !pooled {
        run(&pass, relu, output);
        return;
    }
    assert_eq!(output.len() * 4, p.n * p.out_h * p.out_w * p.c_out);
    let out = SendPtr(output.as_mut_ptr());
    run_blocks(&pass, |mut blk| {
        let args = blk.output_args(p, relu, out);
        // SAFETY: `output_args` checked the lengths of `m`, `bias` and
        // `sink`; `sink` is this task's own scratch, and the pooled pixels
        // of this block's tiles are written by this task only (blocks
        // partition the tiles, each pooled pixel lies in exactly one tile
        // since tiles start at even conv coordinates, and `output` has the
        // pooled NHWC size, asserted).
        unsafe { pooled_block(p, token, &args, blk.first, blk.count) };
    });
}

/// Pooled output transform of tiles `first .. first + count`.
///
/// # Safety
/// `args.m` holds `t*t*count*ldm` floats, `args.bias` and `args.sink` `c_out`
/// each (the sink written by this thread only), `args.out` the pooled NHWC
/// output, whose pixels of these tiles no other thread writes.
unsafe fn pooled_block(p: &Problem, token: Token, args: &OutputArgs, first: usize, count: usize) {
    // Soundness of every arm below: reads stay inside `m` and `bias`; writes
    // go to pooled pixels of these tiles or to `sink`: the caller's contract.
    match token {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as noted above; the token proves AVX-512F, AVX2 and FMA.
        Token::Avx512(isa) => unsafe { pooled_block_avx512(isa, p, args, first, count) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as noted above; the token proves AVX2 and FMA.
        Token::Avx2(isa) => unsafe { pooled_block_avx2(isa, p, args, first, count) },
        // SAFETY: as noted above (the portable code needs no CPU feature).
        Token::Portable(isa) => unsafe { pooled_block_impl(isa, p, args, first, count) },
    }
}

/// # Safety
/// As [`pooled_block_impl`], on a CPU with AVX-512F, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn pooled_block_avx512(isa: Avx512, p: &Problem, args: &OutputArgs, first: usize, count: usize) {
    // SAFETY: forwarded contract; AVX-512F is enabled here.
    unsafe { pooled_block_impl(isa, p, args, first, count) }
}

/// # Safety
/// As [`pooled_block_impl`], on a CPU with AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn pooled_block_avx2(isa: Avx2, p: &Problem, args: &OutputArgs, first: usize, count: usize) {
    // SAFETY: forwarded contract; AVX2 is enabled here.
    unsafe { pooled_block_impl(isa, p, args, first, count) }
}

/// The pooling comparison on scalar lanes: `v > m ? v : m`, what the vector
/// `max` instructions compute (`f32::max` would differ on a NaN `m`).
#[inline(always)]
fn scalar_max(v: f32, m: f32) -> f32 {
    if v > m {
        v
    } else {
        m
    }
}

/// Points each tile's pooled pixels at the output (or the sink past the
/// pooled map's right edge) and runs the pooled transform `S::LANES`
/// channels at a time, then the remainder on scalar lanes.
///
/// # Safety
/// As [`pooled_block`]; the token `isa` proves the instruction set.
#[inline(always)]
unsafe fn pooled_block_impl<S: Isa>(isa: S, p: &Problem, args: &OutputArgs, first: usize, count: usize) {
    let c_out = p.c_out;
    let (ph, pw) = (p.out_h / 2, p.out_w / 2);
    // Pooling windows per tile side: 2 for F4, 1 for F2.
    let wins = p.variant.m() / 2;
    let estride = count * args.ldm;
    let mut dst = [args.sink; 4];
    for b in 0..count {
        let (img, ty, tx) = p.tile_coords(first + b);
        // Window rows of this tile inside the pooled map (>= 1: tiles only
        // cover conv rows below 2 * ph).
        let rows = wins.min(ph - ty * wins);
        for a in 0..wins {
            for k in 0..wins {
                let (py, px) = (ty * wins + a, tx * wins + k);
                dst[a * wins + k] = if py < ph && px < pw {
                    // SAFETY: (img, py, px) is a pooled pixel, its c_out floats are in bounds.
                    unsafe { args.out.add(((img * ph + py) * pw + px) * c_out) }
                } else {
                    args.sink
                };
            }
        }
        // SAFETY: tile b's M rows start at b*ldm inside m.
        let src = unsafe { args.m.add(b * args.ldm) };
        // SAFETY: src + e*estride + c and dst[k] + c are valid for LANES
        // floats while c + LANES <= c_out <= ldm; bias likewise.
        unsafe {
            let mut c = 0;
            match p.variant {
                Variant::F2 => {
                    while c + S::LANES <= c_out {
                        pooled_tile_f2::<S>(isa, src, estride, c, dst[0], args.bias, args.relu, |v, m| v.max(m));
                        c += S::LANES;
                    }
                    for c in c..c_out {
                        let s = isa.scalar();
                        pooled_tile_f2::<Scalar>(s, src, estride, c, dst[0], args.bias, args.relu, scalar_max);
                    }
                }
                Variant::F4 => {
                    while c + S::LANES <= c_out {
                        let max = |v: S::V, m| v.max(m);
                        pooled_tile_f4::<S>(isa, src, estride, c, &dst, rows, args.bias, args.relu, max);
                        c += S::LANES;
                    }
                    for c in c..c_out {
                        let s = isa.scalar();
                        pooled_tile_f4::<Scalar>(s, src, estride, c, &dst, rows, args.bias, args.relu, scalar_max);
                    }
                }
            }
        }
    }
}

/// `act(v + bias)`, the unfused output transform's epilogue exactly.
#[inline(always)]
fn epilogue<V: Vf32>(v: V, bias: V, zero: V, relu: bool) -> V {
    let y = v.add(bias);
    if relu {
        y.max(zero)
    } else {
        y
    }
}

/// F(2x2, 3x3) pooled output transform of one tile for channels `[c, c +
/// S::LANES)`: the 2x2 conv values of `y = act(A^T M A + bias)`, reduced to
/// their maximum in row-major order with `max(v, m)`, stored at `dst + c`.
///
/// # Safety
/// Every `src + e * estride + c` (e < 16), `bias + c` and `dst + c` is valid
/// for `LANES` floats, and the token `isa` proves the instruction set.
#[inline(always)]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)] // j indexes the loads and a column of `rows`
unsafe fn pooled_tile_f2<S: Isa>(
    isa: S,
    src: *const f32,
    estride: usize,
    c: usize,
    dst: *mut f32,
    bias: *const f32,
    relu: bool,
    max: impl Fn(S::V, S::V) -> S::V,
) {
    // SAFETY: the pointer contract is the caller's (see # Safety).
    unsafe {
        let mut rows = [[isa.zero(); 4]; 2];
        for j in 0..4 {
            let at = |i: usize| src.add((i * 4 + j) * estride + c);
            let r = at_f2([isa.load(at(0)), isa.load(at(1)), isa.load(at(2)), isa.load(at(3))]);
            rows[0][j] = r[0];
            rows[1][j] = r[1];
        }
        let (b, zero) = (isa.load(bias.add(c)), isa.zero());
        let [y00, y01] = at_f2(rows[0]);
        let [y10, y11] = at_f2(rows[1]);
        let mut m = epilogue(y00, b, zero, relu);
        m = max(epilogue(y01, b, zero, relu), m);
        m = max(epilogue(y10, b, zero, relu), m);
        m = max(epilogue(y11, b, zero, relu), m);
        m.store(dst.add(c));
    }
}

/// F(4x4, 3x3) pooled output transform of one tile for channels `[c, c +
/// S::LANES)`: the 4x4 conv values of `y = act(A^T M A + bias)` (only the
/// first `2 * rows` rows when the tile's lower windows fall past the pooled
/// map), each 2x2 window `(a, k)` reduced in row-major order with
/// `max(v, m)` and stored at `dst[a * 2 + k] + c`.
///
/// # Safety
/// Every `src + e * estride + c` (e < 36), `bias + c` and, for `a < rows`,
/// `dst[a * 2 + k] + c` is valid for `LANES` floats; `rows` is 1 or 2; the
/// token `isa` proves the instruction set.
#[inline(always)]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
unsafe fn pooled_tile_f4<S: Isa>(
    isa: S,
    src: *const f32,
    estride: usize,
    c: usize,
    dst: &[*mut f32; 4],
    rows: usize,
    bias: *const f32,
    relu: bool,
    max: impl Fn(S::V, S::V) -> S::V,
) {
    // SAFETY: the pointer contract is the caller's (see # Safety).
    unsafe {
        let mut cols = [[isa.zero(); 6]; 4];
        for j in 0..6 {
            let at = |i: usize| src.add((i * 6 + j) * estride + c);
            let col =
                [isa.load(at(0)), isa.load(at(1)), isa.load(at(2)), isa.load(at(3)), isa.load(at(4)), isa.load(at(5))];
            let r = at_f4(isa, col);
            for i in 0..4 {
                cols[i][j] = r[i];
            }
        }
        let (b, zero) = (isa.load(bias.add(c)), isa.zero());
        for a in 0..rows {
            let top = at_f4(isa, cols[2 * a]).map(|v| epilogue(v, b, zero, relu));
            let bottom = at_f4(isa, cols[2 * a + 1]).map(|v| epilogue(v, b, zero, relu));
            for k in 0..2 {
                let mut m = top[2 * k];
                m = max(top[2 * k + 1], m);
                m = max(bottom[2 * k], m);
                m = max(bottom[2 * k + 1], m);
                m.store(dst[a * 2 + k].add(c));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::{conv2d_forward_at, fused, reference, Padding};
    use crate::pool::{max_pool2d_forward_at, PoolShape};
    use convnet_tensor::Rng;

    const ALGOS: [ConvAlgo; 2] = [ConvAlgo::WinogradF2, ConvAlgo::WinogradF4];

    fn random(len: usize, rng: &mut Rng) -> Vec<f32> {
        (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect()
    }

    /// Winograd forward on `level`, then the training max pool: what the
    /// pooled kernel replaces.
    fn unfused(
        level: SimdLevel,
        algo: ConvAlgo,
        s: &ConvShape,
        (x, w, b): (&[f32], &[f32], Option<&[f32]>),
        act: Activation,
    ) -> Vec<f32> {
        let mut map = vec![f32::NAN; s.output_len()];
        conv2d_forward_at(level, algo, s, x, w, b, act, &mut map).unwrap();
        let ps = PoolShape::new(s.n, s.out_h(), s.out_w(), s.c_out, (2, 2), (2, 2), Padding::Valid).unwrap();
        let (mut y, mut arg) = (vec![f32::NAN; ps.output_len()], vec![0u32; ps.output_len()]);
        max_pool2d_forward_at(level, &ps, &map, &mut y, &mut arg).unwrap();
        y
    }

    /// Winograd forward on `level`, then the inference pool (what the
    /// inference plan ran before, and runs where the pool cannot fuse).
    fn unfused_inference(
        level: SimdLevel,
        algo: ConvAlgo,
        s: &ConvShape,
        (x, w, b): (&[f32], &[f32], Option<&[f32]>),
        act: Activation,
    ) -> Vec<f32> {
        let mut map = vec![f32::NAN; s.output_len()];
        conv2d_forward_at(level, algo, s, x, w, b, act, &mut map).unwrap();
        let mut y = vec![f32::NAN; output_len(s, FusedPool::Max2x2)];
        let (h, w, c) = (s.out_h(), s.out_w(), s.c_out);
        fused::max_pool_2x2_at(level, s.n, h, w, c, &map, &mut y, fused::Threading::CallingThread).unwrap();
        y
    }

    fn pooled(
        level: SimdLevel,
        algo: ConvAlgo,
        s: &ConvShape,
        (x, w, b): (&[f32], &[f32], Option<&[f32]>),
        act: Activation,
    ) -> Vec<f32> {
        let mut y = vec![f32::NAN; output_len(s, FusedPool::Max2x2)];
        conv2d_winograd_pooled_at(level, algo, s, x, w, b, act, FusedPool::Max2x2, &mut y).unwrap();
        y
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|v| v.to_bits()).collect()
    }

    /// Shapes: the chapter's conv2d_1 at batch 1 and 3, every residue of the
    /// output size mod 4 (odd sizes drop a row/column), channel counts with
    /// vector remainders, every padding kind, several blocks.
    fn shapes() -> Vec<ConvShape> {
        let mut out = vec![
            ConvShape::new(1, 13, 13, 32, 64, 3, 3).unwrap(),
            ConvShape::new(3, 13, 13, 32, 64, 3, 3).unwrap(),
            ConvShape::new(2, 4, 4, 1, 1, 3, 3).unwrap(),
            ConvShape::new(40, 9, 8, 5, 19, 3, 3).unwrap(),
        ];
        let channels = [1, 3, 16, 17, 33];
        for h in 4..=13usize {
            let w = 4 + (h * 7 + 2) % 10;
            for (k, padding) in [
                Padding::Valid,
                Padding::Same,
                Padding::Explicit { top: 0, bottom: 2, left: 1, right: 0 },
                Padding::Explicit { top: 3, bottom: 1, left: 0, right: 4 },
            ]
            .into_iter()
            .enumerate()
            {
                let (c_in, c_out) = (channels[(h + k) % 5], channels[(h * 3 + k + 1) % 5]);
                let n = 1 + (h + k) % 2;
                out.push(ConvShape::new(n, h, w, c_in, c_out, 3, 3).unwrap().with_padding(padding).unwrap());
            }
        }
        out
    }

    /// Bit-identical to Winograd forward + max pool, every level, both
    /// variants, both activations, with and without bias.
    #[test]
    fn equals_winograd_then_max_pool_bit_for_bit() {
        let mut rng = Rng::new(7);
        for s in shapes() {
            let x = random(s.input_len(), &mut rng);
            let w = random(s.filter_len(), &mut rng);
            let b = random(s.c_out, &mut rng);
            for level in SimdLevel::available() {
                for algo in ALGOS {
                    for act in [Activation::Relu, Activation::Linear] {
                        for bias in [Some(&b[..]), None] {
                            let want = unfused(level, algo, &s, (&x, &w, bias), act);
                            let got = pooled(level, algo, &s, (&x, &w, bias), act);
                            assert_eq!(bits(&got), bits(&want), "{algo} {level:?} {act:?} bias={} {s}", bias.is_some());
                            let inference = unfused_inference(level, algo, &s, (&x, &w, bias), act);
                            assert_eq!(bits(&got), bits(&inference));
                        }
                    }
                }
            }
        }
    }

    /// Without a pool: bit-identical to the Winograd forward (the blocking
    /// differs, the operations per output do not).
    #[test]
    fn unpooled_equals_the_winograd_forward_bit_for_bit() {
        let mut rng = Rng::new(17);
        let mut all = shapes();
        all.push(ConvShape::new(64, 5, 5, 64, 64, 3, 3).unwrap());
        let base = ConvShape::new(2, 3, 3, 4, 5, 3, 3).unwrap();
        all.push(ConvShape { w: 2, ..base }.with_padding(Padding::Same).unwrap());
        for s in all {
            let x = random(s.input_len(), &mut rng);
            let w = random(s.filter_len(), &mut rng);
            let b = random(s.c_out, &mut rng);
            for level in SimdLevel::available() {
                for algo in ALGOS {
                    for act in [Activation::Relu, Activation::Linear] {
                        let mut want = vec![f32::NAN; s.output_len()];
                        conv2d_forward_at(level, algo, &s, &x, &w, Some(&b), act, &mut want).unwrap();
                        let mut got = vec![f32::NAN; s.output_len()];
                        let pool = FusedPool::None;
                        conv2d_winograd_pooled_at(level, algo, &s, &x, &w, Some(&b), act, pool, &mut got).unwrap();
                        assert_eq!(bits(&got), bits(&want), "{algo} {level:?} {act:?} {s}");
                    }
                }
            }
        }
    }

    /// NaN, infinities and negative zeros: the same values as the unfused
    /// conv and the inference pool (the comparison order of the pool
    /// matters only then).
    #[test]
    fn non_finite_inputs_match_the_unfused_kernels() {
        let s = ConvShape::new(2, 10, 9, 3, 17, 3, 3).unwrap();
        let mut rng = Rng::new(3);
        let mut x = random(s.input_len(), &mut rng);
        for (i, v) in x.iter_mut().enumerate() {
            match i % 37 {
                0 => *v = f32::NAN,
                5 => *v = f32::INFINITY,
                9 => *v = -0.0,
                _ => {}
            }
        }
        let w = random(s.filter_len(), &mut rng);
        for level in SimdLevel::available() {
            for algo in ALGOS {
                for act in [Activation::Relu, Activation::Linear] {
                    let got = pooled(level, algo, &s, (&x, &w, None), act);
                    let want = unfused_inference(level, algo, &s, (&x, &w, None), act);
                    // Bit for bit, except that a NaN may differ in sign: the
                    // portable `max` (LLVM's `maxnum`) is commutative to the
                    // optimiser, which may swap two NaN operands.
                    let same =
                        got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits() || a.is_nan() && b.is_nan());
                    assert!(same, "{algo} {level:?} {act:?} vs the inference pool");
                    let training = unfused(level, algo, &s, (&x, &w, None), act);
                    // The training pool treats a NaN window differently (it is
                    // not the inference pool's `v > m ? v : m` there); elsewhere, equal.
                    let same =
                        got.iter().zip(&training).all(|(a, b)| a.to_bits() == b.to_bits() || a.is_nan() || b.is_nan());
                    assert!(same, "{algo} {level:?} {act:?} vs the training pool");
                }
            }
        }
    }

    /// Against the f64 oracle (conv, ReLU, pool), within Winograd's tolerance
    /// scaled by `sum(|x| |w|)` of the largest window (see `super::tests`).
    #[test]
    fn matches_the_reference() {
        let mut rng = Rng::new(11);
        let s = ConvShape::new(2, 13, 13, 32, 64, 3, 3).unwrap();
        let x = random(s.input_len(), &mut rng);
        let w = random(s.filter_len(), &mut rng);
        let b = random(s.c_out, &mut rng);
        let mut map = vec![0.0; s.output_len()];
        reference::forward(&s, &x, &w, Some(&b), &mut map);
        map.iter_mut().for_each(|v| *v = v.max(0.0));
        let (oh, ow, c) = (s.out_h(), s.out_w(), s.c_out);
        let mut want = vec![0.0f32; output_len(&s, FusedPool::Max2x2)];
        fused::max_pool_2x2_at(SimdLevel::Portable, s.n, oh, ow, c, &map, &mut want, fused::Threading::CallingThread)
            .unwrap();
        // Each output sums 288 products of magnitude < 1.
        let mag = 9.0 * s.c_in as f64 + 1.0;
        for level in SimdLevel::available() {
            for (algo, tol) in [(ConvAlgo::WinogradF2, 1.5e-6), (ConvAlgo::WinogradF4, 1.5e-5)] {
                let got = pooled(level, algo, &s, (&x, &w, Some(&b)), Activation::Relu);
                for (g, r) in got.iter().zip(&want) {
                    assert!(((g - r).abs() as f64) <= tol * mag, "{algo} {level:?}: {g} vs {r}");
                }
            }
        }
    }

    /// Results do not depend on the thread count.
    #[test]
    fn bit_identical_for_any_thread_count() {
        let s = ConvShape::new(64, 13, 13, 32, 64, 3, 3).unwrap();
        let mut rng = Rng::new(5);
        let (x, w, b) = (random(s.input_len(), &mut rng), random(s.filter_len(), &mut rng), random(64, &mut rng));
        let level = SimdLevel::available().into_iter().last().unwrap_or(SimdLevel::Portable);
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| pooled(level, ConvAlgo::WinogradF4, &s, (&x, &w, Some(&b)), Activation::Relu))
        };
        assert_eq!(bits(&run(1)), bits(&run(3)));
    }

    #[test]
    fn refuses_what_it_cannot_run_with_a_reason() {
        let level = SimdLevel::Portable;
        let s = ConvShape::new(1, 8, 8, 2, 3, 3, 3).unwrap();
        let (x, w) = (vec![0.0; s.input_len()], vec![0.0; s.filter_len()]);
        let mut y = vec![0.0; output_len(&s, FusedPool::Max2x2)];
        let act = Activation::Relu;
        let pool = FusedPool::Max2x2;
        let err = |algo, s: &ConvShape, y: &mut [f32]| {
            conv2d_winograd_pooled_at(level, algo, s, &x[..s.input_len()], &w[..s.filter_len()], None, act, pool, y)
                .unwrap_err()
                .to_string()
        };
        assert!(err(ConvAlgo::Direct, &s, &mut y).contains("winograd_f2 or winograd_f4"));
        let strided = s.with_stride(2, 2).unwrap();
        assert!(err(ConvAlgo::WinogradF4, &strided, &mut y).contains("stride"));
        let tiny = ConvShape::new(1, 3, 8, 2, 3, 3, 3).unwrap();
        assert!(err(ConvAlgo::WinogradF4, &tiny, &mut y).contains("smaller than the 2x2"));
        assert!(supports(ConvAlgo::WinogradF4, &tiny, FusedPool::None).is_ok());
        assert!(supports(ConvAlgo::WinogradF4, &s.with_groups(1).unwrap(), pool).is_ok());
        assert!(err(ConvAlgo::WinogradF4, &s, &mut y[1..]).contains("output"));
    }
}
