//! Backward-filter by Winograd: the gradient of the element-wise stage.
//!
//! Forward computes, per tile, `Y = A^T [U . V] A` with `M[e] = V[e] U[e]`
//! summed over input channels. With `dY` the output gradient of a tile (zero
//! past the output's edge, where forward clipped), the chain rule gives
//!
//! - `dM = A dY A^T` (the transpose of the output transform),
//! - `dU[e] = sum over tiles of V[e]^T dM[e]`: one `[c_in x tiles] *
//!   [tiles x c_out]` GEMM per tile element, accumulated over tile chunks,
//! - `dg = G^T dU G` (the transpose of the filter transform), per tap.
//!
//! Determinism: tiles are processed in fixed chunks, in order; inside a chunk
//! the transforms run in parallel over disjoint tiles, then one task per tile
//! element accumulates `dU[e] += V[e]^T dM[e]` (a sequential sum over chunks
//! for each `e`), and the final `G^T dU G` sums the elements in a fixed
//! order. No partial sum depends on the thread count, so the result is
//! bit-identical for any pool size.

use super::tiles::{input_block_raw, InputArgs};
use super::transforms::{filter_coefficients, grad_tile_f2, grad_tile_f4};
use super::{Problem, Variant};
use crate::arch::SendPtr;
use crate::arch::{scratch_f32, FtzGuard, Slot};
use crate::gemm::{sgemm_strided, Gemm};
use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use crate::arch::{Avx2, Avx512};
use crate::arch::{Isa, Scalar, Token};

/// Bytes of `V` plus `dM` for one chunk of tiles (shared by all threads).
///
/// The `dU[e] += V[e]^T dM[e]` GEMMs have the chunk's tile count as their
/// inner dimension, so larger chunks make better GEMMs (each pass over the
/// `c_in x c_out` accumulator does more work) while the buffers stay bounded:
/// 8 MiB holds 113 F(4x4) tiles of a 256 -> 256 layer, 1,820 of a 32 -> 64 one.
const CHUNK_BYTES: usize = 8 << 20;

/// Transform tasks per chunk: enough to balance 2-3 threads.
const TRANSFORM_TASKS: usize = 8;

/// `grad_filter` (HWIO, overwritten) from `input` and `grad_output` of `p`.
pub(super) fn backward_filter(p: &Problem, token: Token, input: &[f32], grad_output: &[f32], grad_filter: &mut [f32]) {
    backward_filter_chunked(p, token, input, grad_output, grad_filter, CHUNK_BYTES)
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
    let total = p.tiles();
    let chunk = (chunk_bytes / (t2 * (c_in + c_out) * 4)).clamp(1, total);
    let mut du = scratch_f32(Slot::Filter, t2 * c_in * c_out);
    let (v_len, dm_len) = (t2 * chunk * c_in, t2 * chunk * c_out);
    let mut scratch = scratch_f32(Slot::Tiles, v_len + dm_len + c_in.max(c_out));
    let (v, rest) = scratch.split_at_mut(v_len);
    let (dm, zeros) = rest.split_at_mut(dm_len);
    zeros.fill(0.0);
    for (index, first) in (0..total).step_by(chunk).enumerate() {
        let count = chunk.min(total - first);
        let src = Sources { input, grad_output, zeros };
        transform_chunk(p, token, &src, first, count, v, dm);
        let beta = if index == 0 { 0.0 } else { 1.0 };
        du.par_chunks_mut(c_in * c_out).enumerate().for_each(|(e, du_e)| {
            let _ftz = FtzGuard::new();
            let a = &v[e * count * c_in..][..count * c_in];
            let b = &dm[e * count * c_out..][..count * c_out];
            assert_eq!(du_e.len(), c_in * c_out);
            // dU[e] (c_in x c_out) = V[e]^T (V[e] is count x c_in, read
            // transposed: strides (1, c_in)) times dM[e] (count x c_out).
            let g = Gemm {
                m: c_in,
                k: count,
                n: c_out,
                alpha: 1.0,
                a: a.as_ptr(),
                rsa: 1,
                csa: c_in,
                b: b.as_ptr(),
                rsb: c_out,
                csb: 1,
                beta,
                c: du_e.as_mut_ptr(),
                rsc: c_out,
                csc: 1,
            };
            // SAFETY: `a` holds count*c_in, `b` count*c_out and `du_e`
            // c_in*c_out floats (sliced and asserted above), which bound every
            // address the strides form; `du_e` is this task's own chunk.
            unsafe { sgemm_strided(token, &g) };
        });
    }
    untransform(p.variant, &du, c_in * c_out, grad_filter);
}

/// What the transforms of backward-filter read: the problem's NHWC input and
/// output gradient, and a row of at least `max(c_in, c_out)` zeros.
struct Sources<'a> {
    input: &'a [f32],
    grad_output: &'a [f32],
    zeros: &'a [f32],
}

/// Input transform `V` and gradient transform `dM` of tiles `first .. first + count`,
/// in parallel over fixed sub-ranges, into `[e][count][c]` layouts.
fn transform_chunk(
    p: &Problem,
    token: Token,
    src: &Sources,
    first: usize,
    count: usize,
    v: &mut [f32],
    dm: &mut [f32],
) {
    let (c_in, c_out) = (p.c_in, p.c_out);
    let Sources { input, grad_output, zeros } = *src;
    assert!(v.len() >= p.variant.elems() * count * c_in && dm.len() >= p.variant.elems() * count * c_out);
    assert!(zeros.len() >= c_in.max(c_out) && input.len() == p.n * p.in_h * p.in_w * c_in);
    assert_eq!(grad_output.len(), p.n * p.out_h * p.out_w * c_out);
    let per_task = count.div_ceil(TRANSFORM_TASKS);
    let (v_ptr, dm_ptr) = (SendPtr(v.as_mut_ptr()), SendPtr(dm.as_mut_ptr()));
    (0..count.div_ceil(per_task)).into_par_iter().for_each(|task| {
        let _ftz = FtzGuard::new();
        let start = task * per_task;
        let n = per_task.min(count - start);
        // SAFETY: tiles start..start+n of this chunk own the rows
        // e*count*c + b*c (b in that range) of v and dm, disjoint from every
        // other task's; v holds t*t*count*c_in floats and dm t*t*count*c_out.
        unsafe {
            let (v_ptr, dm_ptr) = (v_ptr, dm_ptr);
            let v = v_ptr.get().add(start * c_in);
            let inputs = InputArgs { input: input.as_ptr(), zeros: zeros.as_ptr(), v, estride: count * c_in };
            input_block_raw(p, token, &inputs, first + start, n);
            let dm = dm_ptr.get().add(start * c_out);
            let grads = GradArgs { grad: grad_output.as_ptr(), zeros: zeros.as_ptr(), dm, estride: count * c_out };
            grad_block(p, token, &grads, first + start, n);
        }
    });
}

/// `dM = A dY A^T` of tiles `first .. first + n`: tile `b`'s element `e` goes
/// to `args.dm + e * args.estride + b * c_out`.
///
/// # Safety
/// As `input_block_raw`, for `args.grad` (the NHWC output gradient) and `c_out`.
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
    let GradArgs { grad, zeros, dm, estride } = *args;
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
        // SAFETY: tile b's rows start at b*c_out (caller's contract).
        let dst = unsafe { dm.add(b * c_out) };
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

/// `dg = G^T dU G`: `grad_filter[tap] = sum_e G[a][i] G[b][j] dU[e]` for
/// `tap = i * 3 + j`, `e = a * t + b`, summed in increasing `e`; one task per tap.
fn untransform(variant: Variant, du: &[f32], plane: usize, grad_filter: &mut [f32]) {
    grad_filter.par_chunks_mut(plane).enumerate().for_each(|(tap, out)| {
        let _ftz = FtzGuard::new();
        out.fill(0.0);
        for e in 0..variant.elems() {
            let (coef, used) = filter_coefficients(variant.g(), e);
            if let Some(&(_, k)) = coef[..used].iter().find(|&&(t, _)| t == tap) {
                for (o, &d) in out.iter_mut().zip(&du[e * plane..][..plane]) {
                    *o += k * d;
                }
            }
        }
    });
}
