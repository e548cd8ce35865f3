//! Backward-filter by Winograd: the gradient of the element-wise stage,
//! streamed through cache-sized chunks of tiles.
//!
//! Forward computes, per tile, `Y = A^T [U . V] A` with `M[e] = V[e] U[e]`
//! summed over input channels. With `dY` the output gradient of a tile (zero
//! past the output's edge, where forward clipped), the chain rule gives
//!
//! - `dM = A dY A^T` (the transpose of the output transform),
//! - `dU[e] = sum over tiles of V[e]^T dM[e]`: per tile element `e`, a sum of
//!   outer products (`c_in x c_out`) over the tiles,
//! - `dg = G^T dU G` (the transpose of the filter transform), per tap.
//!
//! **Streaming.** The tiles are cut into a fixed number of groups (one rayon
//! task each, [`MIN_GROUP_TILES`], [`MAX_GROUPS`]); a group walks its tiles
//! in chunks of at most [`CHUNK_BYTES`] of `V + dM`, transforms a chunk into
//! its own scratch and at once accumulates the chunk's outer products into
//! the group's `dU` with a register-tiled micro-kernel (`MR` input channels
//! x `NV` vectors of output channels held in registers across the chunk's
//! tiles, see [`accumulate`]). The transformed tiles never leave the core's
//! L2: the whole batch's `V` and `dM` (8 MB for the chapter's `conv2d_1`)
//! are never materialised, and no thread waits for another between the
//! transforms and the products.
//!
//! **Determinism.** The groups and chunks depend only on the problem, never
//! on the pool; every element of a group's `dU` is one FMA chain in tile
//! order; the groups' partial `dU` are then summed in group order (parallel
//! over tile elements), and `G^T dU G` sums the elements in a fixed order.
//! So the result is bit-identical for any number of threads.
//!
//! **Layout.** A chunk's `V` is `[e][tile][c_in]` (the forward input
//! transform's layout), its `dM` `[e][tile][ldd]` and each group's `dU`
//! `[e][c_in][ldd]`, with `ldd` = `c_out` rounded up to the vector width
//! (the padding columns of `dM` are zero, those of `dU` are never read), so
//! the micro-kernel only ever loads whole vectors.

use super::tiles::{input_block_raw, InputArgs};
use super::transforms::{filter_coefficients, grad_tile_f2, grad_tile_f4};
use super::{Problem, Variant};
use crate::arch::{scratch_f32, scratch_f32_task, FtzGuard, Slot};
#[cfg(target_arch = "x86_64")]
use crate::arch::{Avx2, Avx512};
use crate::arch::{Isa, Portable, Scalar, Token, Vf32};
use rayon::prelude::*;

/// Bytes of `V + dM` for one chunk of tiles (per task).
///
/// A chunk is transformed into the task's scratch and read back at once by
/// the micro-kernel, while the group's `dU` (`36 * c_in * c_out` floats,
/// 288 KiB for 32 -> 64) is read and written once per chunk: the chunk and
/// `dU` together should stay in one core's L2 (1 MiB on Zen 4, 2 MiB on the
/// Xeons of older measurements), and the more tiles a chunk holds, the more
/// FMAs each pass over `dU` carries. 512 KiB holds 37 F(4x4) tiles of
/// 32 -> 64. Measured on the chapter's conv2d_1 (64x13x13x32->64, 1 thread,
/// Zen 4, `convnet bench conv --backward --algo winograd_f4`, three
/// alternated rounds at load 9): 128 KiB 1.6-1.9 ms, 256 KiB 1.5-1.7,
/// 512 KiB 1.06-1.47, 1 MiB 1.04-1.68, 2 MiB 1.9-5.8 (chunk and `dU` no
/// longer fit in L2).
pub(super) const CHUNK_BYTES: usize = 512 << 10;

/// A group (one task, one partial `dU`) gets at least this many tiles, so
/// the partials' final sum stays small next to the products (for 32 -> 64,
/// one partial is 72 K floats; 32 F(4x4) tiles are 2.4 M FMAs against 74 K adds).
const MIN_GROUP_TILES: usize = 32;

/// At most this many groups: enough for two threads to balance (a fixed
/// number, never the thread count, so results do not depend on the pool),
/// few enough that summing the partials stays cheap. 2, 4 and 8 measured
/// within noise of each other on conv2d_1 at 1 and 2 threads (load 9).
const MAX_GROUPS: usize = 4;

/// Input channels per register block of the micro-kernel (rows of `dU`):
/// 6 rows x 4 zmm (64 output channels) = 24 of AVX-512's 32 registers, with
/// 4 for the `dM` row and one broadcast; 6 x 2 ymm = 12 of AVX2's 16.
const MR: usize = 6;

/// `grad_filter` (HWIO, overwritten) from `input` and `grad_output` of `p`.
pub(super) fn backward_filter(p: &Problem, token: Token, input: &[f32], grad_output: &[f32], grad_filter: &mut [f32]) {
    backward_filter_chunked(p, token, input, grad_output, grad_filter, CHUNK_BYTES)
}

/// Lanes of `token`'s vectors (the `dM`/`dU` row padding).
fn lanes(token: Token) -> usize {
    match token {
        #[cfg(target_arch = "x86_64")]
        Token::Avx512(_) => Avx512::LANES,
        #[cfg(target_arch = "x86_64")]
        Token::Avx2(_) => Avx2::LANES,
        Token::Portable(_) => Portable::LANES,
    }
}

/// How the tiles of `p` are split: `groups` groups of `per_group` tiles
/// (the last may be short), each walked in chunks of `chunk` tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Split {
    pub(super) groups: usize,
    pub(super) per_group: usize,
    pub(super) chunk: usize,
}

impl Split {
    /// The split of `p`'s tiles for `dM` rows of `ldd` floats and chunks of
    /// at most `chunk_bytes` (at least one tile): a function of the problem only.
    pub(super) fn of(p: &Problem, ldd: usize, chunk_bytes: usize) -> Split {
        let total = p.tiles();
        let groups = (total / MIN_GROUP_TILES).clamp(1, MAX_GROUPS);
        let per_group = total.div_ceil(groups).max(1);
        let groups = total.div_ceil(per_group).max(1);
        let per_tile = p.variant.elems() * (p.c_in + ldd) * 4;
        let chunk = (chunk_bytes / per_tile).clamp(1, per_group);
        Split { groups, per_group, chunk }
    }
}

/// [`backward_filter`] with chunks of at most `chunk_bytes` (tests use tiny
/// chunks to exercise the accumulation across chunks).
pub(super) fn backward_filter_chunked(
    p: &Problem,
    token: Token,
    input: &[f32],
    grad_output: &[f32],
    grad_filter: &mut [f32],
    chunk_bytes: usize,
) {
    let _ftz = FtzGuard::new();
    let t2 = p.variant.elems();
    let (c_in, c_out) = (p.c_in, p.c_out);
    assert_eq!(input.len(), p.n * p.in_h * p.in_w * c_in);
    assert_eq!(grad_output.len(), p.n * p.out_h * p.out_w * c_out);
    assert_eq!(grad_filter.len(), 9 * c_in * c_out);
    let ldd = c_out.div_ceil(lanes(token)) * lanes(token);
    let total = p.tiles();
    let split = Split::of(p, ldd, chunk_bytes);
    let du_len = t2 * c_in * ldd;
    let mut partials = scratch_f32(Slot::Filter, split.groups * du_len);
    partials.par_chunks_mut(du_len).enumerate().for_each(|(g, du)| {
        let _ftz = FtzGuard::new();
        let first = g * split.per_group;
        let end = total.min(first + split.per_group);
        let (v_len, dm_len, zeros_len) = (t2 * split.chunk * c_in, t2 * split.chunk * ldd, c_in.max(c_out));
        let len = v_len + dm_len + zeros_len;
        let mut scratch = scratch_f32_task(Slot::Tiles, len, len);
        let (v, rest) = scratch.split_at_mut(v_len);
        let (dm, zeros) = rest.split_at_mut(dm_len);
        zeros.fill(0.0);
        let src = Sources { input, grad_output, zeros };
        for (index, start) in (first..end).step_by(split.chunk).enumerate() {
            let count = split.chunk.min(end - start);
            transform_chunk(p, token, &src, start, count, ldd, v, dm);
            let acc =
                Chunk { t2, count, c_in, ldd, v: v.as_ptr(), dm: dm.as_ptr(), du: du.as_mut_ptr(), load: index > 0 };
            // SAFETY: v holds t2*count*c_in floats, dm t2*count*ldd and du
            // t2*c_in*ldd (sliced above, count <= chunk), all this task's own.
            unsafe { accumulate(token, &acc) };
        }
    });
    let (du, rest) = partials.split_at_mut(du_len);
    if split.groups > 1 {
        let plane = c_in * ldd;
        du.par_chunks_mut(plane).enumerate().for_each(|(e, sum)| {
            for g in 0..split.groups - 1 {
                for (s, &x) in sum.iter_mut().zip(&rest[g * du_len + e * plane..][..plane]) {
                    *s += x;
                }
            }
        });
    }
    untransform(p.variant, du, c_in, c_out, ldd, grad_filter);
}

/// What the transforms of backward-filter read: the problem's NHWC input and
/// output gradient, and a row of at least `max(c_in, c_out)` zeros.
struct Sources<'a> {
    input: &'a [f32],
    grad_output: &'a [f32],
    zeros: &'a [f32],
}

/// Input transform `V` (`[e][count][c_in]`) and gradient transform `dM`
/// (`[e][count][ldd]`, padding columns zeroed) of tiles `first .. first + count`.
#[allow(clippy::too_many_arguments)]
fn transform_chunk(
    p: &Problem,
    token: Token,
    src: &Sources,
    first: usize,
    count: usize,
    ldd: usize,
    v: &mut [f32],
    dm: &mut [f32],
) {
    let (c_in, c_out) = (p.c_in, p.c_out);
    let Sources { input, grad_output, zeros } = *src;
    assert!(v.len() >= p.variant.elems() * count * c_in && dm.len() >= p.variant.elems() * count * ldd);
    assert!(zeros.len() >= c_in.max(c_out) && input.len() == p.n * p.in_h * p.in_w * c_in);
    assert!(ldd >= c_out && grad_output.len() == p.n * p.out_h * p.out_w * c_out);
    let inputs = InputArgs { input: input.as_ptr(), zeros: zeros.as_ptr(), v: v.as_mut_ptr(), estride: count * c_in };
    let grads = GradArgs {
        grad: grad_output.as_ptr(),
        zeros: zeros.as_ptr(),
        dm: dm.as_mut_ptr(),
        ld: ldd,
        estride: count * ldd,
    };
    // SAFETY: `input`, `grad_output` and `zeros` are the problem's buffers
    // and a zero row (asserted above); tile b's element-e rows
    // (e*count*c_in + b*c_in in v, e*count*ldd + b*ldd in dm, b < count)
    // lie inside `v` and `dm` (asserted), borrowed mutably here.
    unsafe {
        input_block_raw(p, token, &inputs, first, count);
        grad_block(p, token, &grads, first, count);
    }
}

/// `dM = A dY A^T` of tiles `first .. first + n`: tile `b`'s element `e` goes
/// to `args.dm + e * args.estride + b * args.ld` (`c_out` values, then zeros
/// up to `args.ld`).
///
/// # Safety
/// As `input_block_raw`, for `args.grad` (the NHWC output gradient) and rows
/// of `args.ld >= c_out` floats.
unsafe fn grad_block(p: &Problem, token: Token, args: &GradArgs, first: usize, n: usize) {
    // Soundness of every arm below: gathers stay inside grad_output (bounds-checked per
    // pixel) or `zeros`; writes stay in the caller's rows.
    match token {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as noted above; the token proves AVX-512F, AVX2 and FMA.
        Token::Avx512(isa) => unsafe { grad_block_avx512(isa, p, args, first, n) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as noted above; the token proves AVX2 and FMA.
        Token::Avx2(isa) => unsafe { grad_block_avx2(isa, p, args, first, n) },
        // SAFETY: as noted above (the portable code needs no CPU feature).
        Token::Portable(isa) => unsafe { grad_block_impl(isa, p, args, first, n) },
    }
}

#[derive(Clone, Copy)]
struct GradArgs {
    grad: *const f32,
    zeros: *const f32,
    dm: *mut f32,
    /// Row length of `dM` (a tile's element row), at least `c_out`.
    ld: usize,
    estride: usize,
}

/// # Safety
/// As [`grad_block_impl`], on a CPU with AVX-512F, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn grad_block_avx512(isa: Avx512, p: &Problem, args: &GradArgs, first: usize, n: usize) {
    // SAFETY: forwarded contract; AVX-512F is enabled here.
    unsafe { grad_block_impl(isa, p, args, first, n) }
}

/// # Safety
/// As [`grad_block_impl`], on a CPU with AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn grad_block_avx2(isa: Avx2, p: &Problem, args: &GradArgs, first: usize, n: usize) {
    // SAFETY: forwarded contract; AVX2 is enabled here.
    unsafe { grad_block_impl(isa, p, args, first, n) }
}

/// # Safety
/// As [`grad_block`]; the token `isa` proves the instruction set.
#[inline(always)]
unsafe fn grad_block_impl<S: Isa>(isa: S, p: &Problem, args: &GradArgs, first: usize, n: usize) {
    let GradArgs { grad, zeros, dm, ld, estride } = *args;
    let (m, c_out) = (p.variant.m(), p.c_out);
    let mut src = [zeros; 16];
    for b in 0..n {
        let (img, ty, tx) = p.tile_coords(first + b);
        for i in 0..m {
            for j in 0..m {
                let (oy, ox) = (ty * m + i, tx * m + j);
                src[i * m + j] = if oy < p.out_h && ox < p.out_w {
                    // SAFETY: (img, oy, ox) is an output pixel; its c_out floats are in bounds.
                    unsafe { grad.add(((img * p.out_h + oy) * p.out_w + ox) * c_out) }
                } else {
                    zeros
                };
            }
        }
        // SAFETY: tile b's rows start at b*ld (caller's contract).
        let dst = unsafe { dm.add(b * ld) };
        for e in 0..p.variant.elems() {
            for c in c_out..ld {
                // SAFETY: padding column c < ld of tile b's element-e row.
                unsafe { *dst.add(e * estride + c) = 0.0 };
            }
        }
        // SAFETY: every src row holds c_out floats, every
        // dst + e*estride row c_out floats, and c + LANES <= c_out.
        unsafe {
            match p.variant {
                Variant::F2 => {
                    let src: &[*const f32; 4] = src.first_chunk().unwrap_or_else(|| unreachable!());
                    let mut c = 0;
                    while c + S::LANES <= c_out {
                        grad_tile_f2::<S>(isa, src, c, dst, estride);
                        c += S::LANES;
                    }
                    for c in c..c_out {
                        grad_tile_f2::<Scalar>(isa.scalar(), src, c, dst, estride);
                    }
                }
                Variant::F4 => {
                    let mut c = 0;
                    while c + S::LANES <= c_out {
                        grad_tile_f4::<S>(isa, &src, c, dst, estride);
                        c += S::LANES;
                    }
                    for c in c..c_out {
                        grad_tile_f4::<Scalar>(isa.scalar(), &src, c, dst, estride);
                    }
                }
            }
        }
    }
}

/// One chunk's accumulation: `dU[e] (+)= V[e]^T dM[e]` for every tile element.
#[derive(Clone, Copy)]
struct Chunk {
    /// Tile elements.
    t2: usize,
    /// Tiles in the chunk.
    count: usize,
    c_in: usize,
    /// Row length of `dM` and `dU` (a multiple of the vector width).
    ldd: usize,
    /// `[e][count][c_in]`.
    v: *const f32,
    /// `[e][count][ldd]`.
    dm: *const f32,
    /// `[e][c_in][ldd]`.
    du: *mut f32,
    /// Add to `du` (`false`: overwrite it, the group's first chunk).
    load: bool,
}

/// `dU[e] (+)= V[e]^T dM[e]` on `token`'s instruction set.
///
/// # Safety
/// `c.v` valid for `t2 * count * c_in` reads, `c.dm` for `t2 * count * ldd`,
/// `c.du` for `t2 * c_in * ldd` reads and writes (no other thread touching
/// it), and `ldd` a multiple of `token`'s vector width.
unsafe fn accumulate(token: Token, c: &Chunk) {
    match token {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller's contract; the token proves AVX-512F, AVX2 and FMA.
        Token::Avx512(isa) => unsafe { accumulate_avx512(isa, c) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller's contract; the token proves AVX2 and FMA.
        Token::Avx2(isa) => unsafe { accumulate_avx2(isa, c) },
        // SAFETY: the caller's contract (the portable code needs no CPU feature).
        Token::Portable(isa) => unsafe { accumulate_impl::<_, 2>(isa, c) },
    }
}

/// AVX-512: register blocks of 6 input channels x 64 output channels (24 zmm).
///
/// # Safety
/// As [`accumulate`], on a CPU with AVX-512F, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn accumulate_avx512(isa: Avx512, c: &Chunk) {
    // SAFETY: forwarded contract.
    unsafe { accumulate_impl::<_, 4>(isa, c) }
}

/// AVX2: register blocks of 6 input channels x 16 output channels (12 ymm).
///
/// # Safety
/// As [`accumulate`], on a CPU with AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn accumulate_avx2(isa: Avx2, c: &Chunk) {
    // SAFETY: forwarded contract.
    unsafe { accumulate_impl::<_, 2>(isa, c) }
}

/// Per tile element, `dU[e]` in register blocks of `MR` input channels x
/// `NV` vectors of output channels (then narrower blocks for the last
/// output channels, fewer rows for the last input channels); each block
/// runs over the chunk's tiles in registers and is read and written once.
///
/// # Safety
/// As [`accumulate`]; the token `isa` proves the instruction set.
#[inline(always)]
unsafe fn accumulate_impl<S: Isa, const NV: usize>(isa: S, c: &Chunk) {
    let Chunk { t2, count, c_in, ldd, v, dm, du, load } = *c;
    debug_assert_eq!(ldd % S::LANES, 0);
    let wide = NV * S::LANES;
    for e in 0..t2 {
        // SAFETY: element e's planes: v + e*count*c_in (count*c_in floats),
        // dm + e*count*ldd (count*ldd), du + e*c_in*ldd (c_in*ldd).
        let (ve, de, ue) = unsafe { (v.add(e * count * c_in), dm.add(e * count * ldd), du.add(e * c_in * ldd)) };
        let mut ci = 0;
        while ci < c_in {
            let rows = MR.min(c_in - ci);
            let mut co = 0;
            // SAFETY: rows ci..ci+rows < c_in and columns co..co+NV*LANES <= ldd
            // of the element's planes (co + wide <= ldd in the loop; the
            // remainder is (ldd - co) / LANES < NV whole vectors).
            unsafe {
                let block = |co: usize| Block {
                    k: count,
                    v: ve.add(ci),
                    ldv: c_in,
                    d: de.add(co),
                    ldd,
                    u: ue.add(ci * ldd + co),
                    load,
                };
                while co + wide <= ldd {
                    rows_block::<S, NV>(isa, rows, &block(co));
                    co += wide;
                }
                match (ldd - co) / S::LANES {
                    0 => {}
                    1 => rows_block::<S, 1>(isa, rows, &block(co)),
                    2 => rows_block::<S, 2>(isa, rows, &block(co)),
                    _ => rows_block::<S, 3>(isa, rows, &block(co)),
                }
            }
            ci += MR;
        }
    }
}

/// One register block's operands: `k` tiles; `v` at the block's first input
/// channel (tile stride `ldv`), `d` at its first output channel (tile stride
/// `ldd`), `u` at its first `dU` element (row stride `ldd`).
#[derive(Clone, Copy)]
struct Block {
    k: usize,
    v: *const f32,
    ldv: usize,
    d: *const f32,
    ldd: usize,
    u: *mut f32,
    load: bool,
}

/// [`outer`] for a run-time row count `rows` in `1..=MR`.
///
/// # Safety
/// As [`outer`] with `R = rows`.
#[inline(always)]
unsafe fn rows_block<S: Isa, const NV: usize>(isa: S, rows: usize, b: &Block) {
    // SAFETY: forwarded contract.
    unsafe {
        match rows {
            1 => outer::<S, 1, NV>(isa, b),
            2 => outer::<S, 2, NV>(isa, b),
            3 => outer::<S, 3, NV>(isa, b),
            4 => outer::<S, 4, NV>(isa, b),
            5 => outer::<S, 5, NV>(isa, b),
            _ => outer::<S, MR, NV>(isa, b),
        }
    }
}

/// `u[r][0..NV*LANES] (+)= sum_kk v[kk][r] * d[kk][0..NV*LANES]` for `r < R`:
/// `R x NV` accumulators in registers, one FMA chain per element in tile order.
///
/// # Safety
/// `b.v + kk * ldv + r` readable for `kk < k`, `r < R`; `b.d + kk * ldd` for
/// `NV * LANES` reads; `b.u + r * ldd` for `NV * LANES` reads and writes.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn outer<S: Isa, const R: usize, const NV: usize>(isa: S, b: &Block) {
    let Block { k, v, ldv, d, ldd, u, load } = *b;
    let mut acc = [[isa.zero(); NV]; R];
    if load {
        for r in 0..R {
            for j in 0..NV {
                // SAFETY: row r of the block, vector j (the contract above).
                acc[r][j] = unsafe { isa.load(u.add(r * ldd + j * S::LANES)) };
            }
        }
    }
    for kk in 0..k {
        let mut dv = [isa.zero(); NV];
        for j in 0..NV {
            // SAFETY: tile kk's dM row, vector j.
            dv[j] = unsafe { isa.load(d.add(kk * ldd + j * S::LANES)) };
        }
        for r in 0..R {
            // SAFETY: tile kk's V value for input channel r of the block.
            let a = isa.splat(unsafe { *v.add(kk * ldv + r) });
            for j in 0..NV {
                acc[r][j] = a.mul_add(dv[j], acc[r][j]);
            }
        }
    }
    for r in 0..R {
        for j in 0..NV {
            // SAFETY: row r of the block, vector j.
            unsafe { acc[r][j].store(u.add(r * ldd + j * S::LANES)) };
        }
    }
}

/// `dg = G^T dU G`: `grad_filter[tap] = sum_e G[a][i] G[b][j] dU[e]` for
/// `tap = i * 3 + j`, `e = a * t + b`, summed in increasing `e`; one task per
/// tap. `du` is `[e][c_in][ldd]`.
fn untransform(variant: Variant, du: &[f32], c_in: usize, c_out: usize, ldd: usize, grad_filter: &mut [f32]) {
    let plane = c_in * ldd;
    grad_filter.par_chunks_mut(c_in * c_out).enumerate().for_each(|(tap, out)| {
        let _ftz = FtzGuard::new();
        out.fill(0.0);
        for e in 0..variant.elems() {
            let (coef, used) = filter_coefficients(variant.g(), e);
            if let Some(&(_, k)) = coef[..used].iter().find(|&&(t, _)| t == tap) {
                for (o, d) in out.chunks_exact_mut(c_out).zip(du[e * plane..][..plane].chunks_exact(ldd)) {
                    for (o, &d) in o.iter_mut().zip(d) {
                        *o += k * d;
                    }
                }
            }
        }
    });
}
